/**
 * kpass's metrics, in kube-apiserver's conventions (snake_case, `_total`, `_seconds`, lower-case
 * labels). The request path only bumps numbers in plain Maps keyed by label tuple: prom-client
 * sees them at scrape time, as collectors, and writes the exposition text (escaping, histogram
 * series, process metrics). Labels are bounded: clusters, verbs, resources, codes and stream
 * kinds — never a pass, a user, an object name or a path.
 */
import { X509Certificate } from "node:crypto";
import { collectDefaultMetrics, Registry, type Metric, type MetricValue, type MetricValueWithName } from "prom-client";
import type { RequestAttributes } from "../auth/request-attributes.ts";
import type { Cluster } from "../core/cluster.ts";
import type { Pass } from "../core/pass.ts";
import { KPASS_VERSION } from "../core/version.ts";
import type { FinishedRequest, RequestMetricsSink, StreamKind } from "../proxy/cluster-admission.ts";

/** kpass's own share is small (it never waits on the network): finer buckets than the cluster's. */
export const KPASS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** kube-apiserver's apiserver_request_duration_seconds buckets: what the cluster's time is compared with. */
export const UPSTREAM_BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60];

/** Verbs a RequestAttributes can carry for a known method; anything else is "other", as kube-apiserver's cleanVerb does. */
const VERBS = new Set(["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "post", "put", "head", "options", "impersonate", "bind", "escalate", "approve", "sign", "use"]);
/** A resource (and subresource) is a DNS label, as a CRD plural must be; anything else cannot be a real one. */
const RESOURCE_PART = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Distinct resource label values per cluster: a pass allowed `*` could otherwise mint one series per request. */
export const MAX_RESOURCES_PER_CLUSTER = 256;
/** The value for a resource that is malformed or over the bound (the underscore makes it no real resource's name). */
export const OTHER_RESOURCE = "_other";
const TUNNELS = new Set<StreamKind>(["exec", "attach", "portforward", "proxy"]);
const PASS_WINDOWS: [string, number][] = [["1h", 3600], ["24h", 86_400], ["7d", 7 * 86_400]];

interface RequestSeries {
  cluster: string;
  verb: string;
  resource: string;
  code: string;
  count: number;
}

/** One histogram series; `counts` per bucket (not cumulative: that is done at scrape time). */
interface HistogramSeries {
  cluster: string;
  verb: string;
  counts: Float64Array;
  sum: number;
  count: number;
}

class Histogram {
  readonly series = new Map<string, HistogramSeries>();
  constructor(readonly buckets: readonly number[]) {}

  observe(key: string, cluster: string, verb: string, seconds: number): void {
    let s = this.series.get(key);
    if (!s) {
      s = { cluster, verb, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && seconds > this.buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  values(name: string): MetricValueWithName<string>[] {
    const out: MetricValueWithName<string>[] = [];
    for (const s of this.series.values()) {
      const labels = { cluster: s.cluster, verb: s.verb };
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i]!;
        out.push({ labels: { ...labels, le }, value: cumulative, metricName: `${name}_bucket` });
      });
      out.push({ labels: { ...labels, le: "+Inf" }, value: s.count, metricName: `${name}_bucket` });
      out.push({ labels, value: s.sum, metricName: `${name}_sum` });
      out.push({ labels, value: s.count, metricName: `${name}_count` });
    }
    return out;
  }
}

export interface MetricsSources {
  clusters(): readonly Cluster[];
  passes(): readonly Pass[];
  /** The serving certificate now (a reload may replace it). */
  servingCertificatePem(): string;
  auditWriteErrors(): number;
}

/** Resource label of a request: resource[/subresource], "" for a non-resource request. */
function resourceOf(a: RequestAttributes): string {
  if (!a.isResourceRequest) return "";
  if (!RESOURCE_PART.test(a.resource) || (a.subresource !== "" && !RESOURCE_PART.test(a.subresource))) return OTHER_RESOURCE;
  return a.subresource === "" ? a.resource : `${a.resource}/${a.subresource}`;
}

export class Metrics implements RequestMetricsSink {
  private readonly byCode = new Map<number, number>();
  private readonly requests = new Map<string, RequestSeries>();
  private readonly resources = new Map<string, Set<string>>();
  private readonly kpassDuration = new Histogram(KPASS_BUCKETS);
  private readonly upstreamDuration = new Histogram(UPSTREAM_BUCKETS);
  private readonly streams = new Map<string, { cluster: string; kind: StreamKind; open: number }>();
  private readonly tunnelBytes = new Map<string, { in: number; out: number }>();
  private readonly liveTunnels = new Set<{ cluster: string; bytes: () => { bytesIn: number; bytesOut: number } }>();
  private readonly refusedByCode = new Map<number, number>();
  private certificate: { pem: string; notAfterMs: number } | undefined;
  readonly registry = new Registry();

  constructor(private readonly sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry });
    // Bun has no process._getActiveHandles/_getActiveRequests/getActiveResourcesInfo: these are
    // always empty or 0 there, and the *_total ones are gauges named like counters (promtool flags them).
    for (const name of ["nodejs_active_handles", "nodejs_active_handles_total", "nodejs_active_requests", "nodejs_active_requests_total", "nodejs_active_resources", "nodejs_active_resources_total"]) this.registry.removeSingleMetric(name);
    this.registerCollectors();
  }

  /** The status of every response of the request handler (kpass_requests_total). */
  observe(status: number): void {
    this.byCode.set(status, (this.byCode.get(status) ?? 0) + 1);
  }

  streamOpened(cluster: string, kind: StreamKind): void {
    const key = `${cluster}\0${kind}`;
    const entry = this.streams.get(key);
    if (entry) entry.open++;
    else this.streams.set(key, { cluster, kind, open: 1 });
  }

  tunnelOpened(cluster: string, bytes: () => { bytesIn: number; bytesOut: number }): () => void {
    const live = { cluster, bytes };
    this.liveTunnels.add(live);
    return () => this.liveTunnels.delete(live);
  }

  finished(r: FinishedRequest): void {
    const verb = VERBS.has(r.attributes.verb) ? r.attributes.verb : "other";
    const resource = this.boundedResource(r.cluster, resourceOf(r.attributes));
    const code = String(r.status);
    const key = `${r.cluster}\0${verb}\0${resource}\0${code}`;
    const series = this.requests.get(key);
    if (series) series.count++;
    else this.requests.set(key, { cluster: r.cluster, verb, resource, code, count: 1 });
    if (r.stream) {
      const open = this.streams.get(`${r.cluster}\0${r.stream}`);
      if (open && open.open > 0) open.open--;
      if (TUNNELS.has(r.stream)) this.addTunnelBytes(r.cluster, r.bytesIn, r.bytesOut);
      // Like kube-apiserver's latency SLIs, which leave WATCH and CONNECT out: a stream's
      // duration is how long someone kept it open, not how fast anything answered.
      return;
    }
    if (r.timing) {
      const hkey = `${r.cluster}\0${verb}`;
      this.kpassDuration.observe(hkey, r.cluster, verb, Math.max(0, r.timing.totalMs - r.timing.upstreamMs) / 1000);
      if (r.timing.answered) this.upstreamDuration.observe(hkey, r.cluster, verb, r.timing.upstreamMs / 1000);
    }
  }

  refused(status: number): void {
    this.refusedByCode.set(status, (this.refusedByCode.get(status) ?? 0) + 1);
  }

  /** Drops a deleted cluster's series, so that what is kept is bounded by the clusters that exist. */
  forgetCluster(cluster: string): void {
    const prefix = `${cluster}\0`;
    for (const map of [this.requests, this.kpassDuration.series, this.upstreamDuration.series, this.streams] as Map<string, { cluster: string }>[]) {
      for (const [key, value] of map) if (key.startsWith(prefix) && value.cluster === cluster) map.delete(key);
    }
    this.resources.delete(cluster);
    this.tunnelBytes.delete(cluster);
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  private boundedResource(cluster: string, resource: string): string {
    if (resource === "" || resource === OTHER_RESOURCE) return resource;
    let seen = this.resources.get(cluster);
    if (!seen) this.resources.set(cluster, (seen = new Set()));
    if (seen.has(resource)) return resource;
    if (seen.size >= MAX_RESOURCES_PER_CLUSTER) return OTHER_RESOURCE;
    seen.add(resource);
    return resource;
  }

  private addTunnelBytes(cluster: string, bytesIn: number, bytesOut: number): void {
    const totals = this.tunnelBytes.get(cluster);
    if (totals) {
      totals.in += bytesIn;
      totals.out += bytesOut;
    } else this.tunnelBytes.set(cluster, { in: bytesIn, out: bytesOut });
  }

  private certificateNotAfterMs(): number | undefined {
    const pem = this.sources.servingCertificatePem();
    if (this.certificate?.pem !== pem) {
      try {
        this.certificate = { pem, notAfterMs: Date.parse(new X509Certificate(pem).validTo) };
      } catch {
        return undefined;
      }
    }
    return this.certificate.notAfterMs;
  }

  /** A metric whose values are computed at scrape time. */
  private collector(name: string, help: string, type: "counter" | "gauge" | "histogram", values: () => MetricValue<string>[]): void {
    // prom-client's Registry only calls get() (and reset() on registry.resetMetrics()).
    const metric = { name, help, type, aggregator: "sum", get: async () => ({ name, help, type, aggregator: "sum", values: values() }), reset: () => {} };
    this.registry.registerMetric(metric as unknown as Metric<string>);
  }

  private registerCollectors(): void {
    const { sources } = this;
    const now = () => Date.now();
    this.collector("kpass_requests_total", "Requests answered by kpass's request handler (kpass's API and REST requests to clusters), by HTTP code.", "counter", () =>
      [...this.byCode].map(([code, value]) => ({ labels: { code: String(code) }, value })),
    );
    this.collector("kpass_proxy_requests_total", "Requests kpass let through to a cluster, counted when they ended, by cluster, verb, resource[/subresource] (\"\" for non-resource requests) and HTTP code.", "counter", () =>
      [...this.requests.values()].map((s) => ({ labels: { cluster: s.cluster, verb: s.verb, resource: s.resource, code: s.code }, value: s.count })),
    );
    this.collector("kpass_proxy_request_duration_seconds", "kpass's own share of a cluster-bound request's time until its response head was ready (the cluster's time taken out), by cluster and verb; watches, log follows and tunnels are not included.", "histogram", () =>
      this.kpassDuration.values("kpass_proxy_request_duration_seconds"),
    );
    this.collector("kpass_upstream_response_duration_seconds", "Time from sending a request to a cluster until its response head arrived, by cluster and verb; watches, log follows and tunnels are not included.", "histogram", () =>
      this.upstreamDuration.values("kpass_upstream_response_duration_seconds"),
    );
    this.collector("kpass_open_streams", "Open long-lived requests through kpass, by cluster and kind (watch, follow, exec, attach, portforward, proxy).", "gauge", () =>
      [...this.streams.values()].map((s) => ({ labels: { cluster: s.cluster, kind: s.kind }, value: s.open })),
    );
    this.collector("kpass_tunnel_bytes_total", "Bytes through exec, attach, port-forward and proxy tunnels, by cluster and direction (in: client to cluster, out: cluster to client); open tunnels included.", "counter", () => {
      const totals = new Map<string, { in: number; out: number }>();
      for (const [cluster, t] of this.tunnelBytes) totals.set(cluster, { ...t });
      for (const live of this.liveTunnels) {
        const b = live.bytes();
        const t = totals.get(live.cluster) ?? { in: 0, out: 0 };
        t.in += b.bytesIn;
        t.out += b.bytesOut;
        totals.set(live.cluster, t);
      }
      return [...totals].flatMap(([cluster, t]) => [
        { labels: { cluster, direction: "in" }, value: t.in },
        { labels: { cluster, direction: "out" }, value: t.out },
      ]);
    });
    this.collector("kpass_refused_requests_total", "Cluster-bound requests kpass refused itself (unauthenticated, forbidden, unknown cluster, bad request, too many streams), by HTTP code.", "counter", () =>
      [...this.refusedByCode].map(([code, value]) => ({ labels: { code: String(code) }, value })),
    );
    this.collector("kpass_cluster_ready", "Whether kpass's last probe of the cluster's /version succeeded (1) or not (0).", "gauge", () =>
      sources.clusters().map((c) => ({ labels: { cluster: c.metadata.name }, value: c.status?.conditions?.find((x) => x.type === "Ready")?.status === "True" ? 1 : 0 })),
    );
    this.collector("kpass_cluster_info", "The cluster's version as its last successful probe read it (always 1).", "gauge", () =>
      sources.clusters().filter((c) => c.status?.version).map((c) => ({ labels: { cluster: c.metadata.name, version: c.status!.version! }, value: 1 })),
    );
    this.collector("kpass_clusters", "Cluster objects.", "gauge", () => [{ labels: {}, value: sources.clusters().length }]);
    this.collector("kpass_passes", "Pass objects.", "gauge", () => [{ labels: {}, value: sources.passes().length }]);
    this.collector("kpass_passes_expiring", "Passes not yet expired that expire within the window (1h, 24h, 7d); expired passes are counted with window=\"expired\".", "gauge", () => {
      const left = this.passSecondsLeft(now());
      return [
        { labels: { window: "expired" }, value: left.filter((s) => s <= 0).length },
        ...PASS_WINDOWS.map(([window, seconds]) => ({ labels: { window }, value: left.filter((s) => s > 0 && s <= seconds).length })),
      ];
    });
    this.collector("kpass_pass_min_expiry_seconds", "Seconds until the first pass that has not expired yet expires (absent when none has an expiry).", "gauge", () => {
      const left = this.passSecondsLeft(now()).filter((s) => s > 0);
      return left.length === 0 ? [] : [{ labels: {}, value: Math.min(...left) }];
    });
    this.collector("kpass_serving_certificate_expiry_seconds", "Seconds until the serving certificate kpass presents expires.", "gauge", () => {
      const notAfter = this.certificateNotAfterMs();
      return notAfter === undefined ? [] : [{ labels: {}, value: (notAfter - now()) / 1000 }];
    });
    this.collector("kpass_audit_write_errors_total", "Audit log writes that failed.", "counter", () => [{ labels: {}, value: sources.auditWriteErrors() }]);
    this.collector("kpass_build_info", "kpass's version and the Bun it runs on (always 1).", "gauge", () => [{ labels: { version: KPASS_VERSION, bun_version: Bun.version }, value: 1 }]);
  }

  private passSecondsLeft(nowMs: number): number[] {
    const out: number[] = [];
    for (const p of this.sources.passes()) {
      const at = p.spec.expiresAt ? Date.parse(p.spec.expiresAt) : NaN;
      if (Number.isFinite(at)) out.push((at - nowMs) / 1000);
    }
    return out;
  }
}
