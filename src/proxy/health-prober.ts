import type { ObjectStore } from "../store/object-store.ts";
import { timestamp } from "../core/object.ts";
import { clusterTarget, type ClusterTransports } from "./cluster-transport.ts";
import { upstreamFailure } from "./forward.ts";
import { upstreamHeaders } from "./upstream-headers.ts";
import type { Cluster, ClusterStatus, Condition } from "../core/cluster.ts";

const PROBE_CONCURRENCY = 8;


/** Where a redirect points, as its origin only (a Location's path or query may carry a secret). */
function redirectTarget(location: string | null, base: string): string {
  if (!location) return "a redirect";
  try {
    return `a redirect to ${new URL(location, base).origin.slice(0, 200)}`;
  } catch {
    return "a redirect";
  }
}

interface ProbeResult {
  ready: boolean;
  reason: string;
  message: string;
  version?: string;
  platform?: string;
}

/**
 * Probes each cluster's /version with its stored credential: when it is created or its spec
 * changes, and then every `intervalMs`. The result is written to the Cluster's status, which is
 * what `kubectl get clusters` shows as READY and VERSION.
 */
export class HealthProber {
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly inFlight = new Set<string>();
  private stopWatching: (() => void) | undefined;

  constructor(
    private readonly clusters: ObjectStore<Cluster>,
    private readonly transports: ClusterTransports,
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
  ) {}

  start(): void {
    const watch = this.clusters.subscribe((event) => {
      if (event.type === "DELETED") {
        this.transports.forget(event.object.metadata.name);
        return;
      }
      const status = event.object.status;
      if (status?.observedGeneration !== event.object.metadata.generation) void this.probe(event.object.metadata.name);
    });
    this.stopWatching = () => watch.stop();
    void this.probeAll();
    if (this.intervalMs > 0) this.timer = setInterval(() => void this.probeAll(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.stopWatching?.();
  }

  /** Probes every cluster, a few at a time, so a thousand clusters do not stall the proxy. */
  async probeAll(): Promise<void> {
    const names = this.clusters.list().map((c) => c.metadata.name);
    let next = 0;
    const worker = async () => {
      while (next < names.length) await this.probe(names[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, names.length) }, worker));
  }

  async probe(name: string): Promise<void> {
    if (this.inFlight.has(name)) return;
    const cluster = this.clusters.get(name);
    if (!cluster) return;
    this.inFlight.add(name);
    try {
      const result = await this.check(cluster);
      await this.record(name, cluster.metadata.generation, result);
    } catch {
      // The cluster was deleted or changed meanwhile; the next event or tick probes again.
    } finally {
      this.inFlight.delete(name);
    }
  }

  private async check(cluster: Cluster): Promise<ProbeResult> {
    const transport = this.transports.for(cluster);
    const url = `${transport.endpoint.origin}${clusterTarget(transport, "/version", "")}`;
    const abort = AbortSignal.timeout(this.timeoutMs);
    try {
      // Never follow a redirect: it would carry the cluster's credential to wherever the Location points.
      const response = await transport.fetch(url, { headers: upstreamHeaders(new Headers({ accept: "application/json" }), transport, undefined), signal: abort, redirect: "manual" });
      if ((response.status >= 300 && response.status < 400) || response.redirected) {
        await response.body?.cancel();
        return { ready: false, reason: `HTTP${response.status}`, message: `GET /version answered ${response.status} (${redirectTarget(response.headers.get("location"), url)}); kpass does not follow redirects from a cluster` };
      }
      const body = await response.text();
      if (!response.ok) return { ready: false, reason: `HTTP${response.status}`, message: `GET /version answered ${response.status}: ${body.slice(0, 200)}` };
      const info = JSON.parse(body) as { gitVersion?: string; platform?: string };
      return { ready: true, reason: "ProbeSucceeded", message: "GET /version succeeded", version: info.gitVersion, platform: info.platform };
    } catch (error) {
      const failure = upstreamFailure(cluster.metadata.name, error, abort.aborted);
      return { ready: false, reason: failure.code === 502 ? "TLSError" : "Unreachable", message: failure.message };
    }
  }

  /** Whether the stored status already says what this probe found, recently enough. */
  private unchanged(name: string, generation: number, result: ProbeResult): boolean {
    const status = this.clusters.get(name)?.status;
    const ready = status?.conditions?.find((c) => c.type === "Ready");
    if (!status || !ready || status.observedGeneration !== generation) return false;
    const same = ready.status === (result.ready ? "True" : "False") && ready.reason === result.reason && ready.message === result.message && (result.version ?? status.version) === status.version;
    // Like a kubelet's node status: rewrite an unchanged status only now and then, not every probe.
    const heartbeatMs = Math.max(5 * this.intervalMs, 5 * 60_000);
    return same && Date.now() - Date.parse(status.lastProbeTime ?? "") < heartbeatMs;
  }

  private async record(name: string, generation: number, result: ProbeResult): Promise<void> {
    if (this.unchanged(name, generation, result)) return;
    await this.clusters.update(name, (current) => {
      const previous = current.status?.conditions?.find((c) => c.type === "Ready");
      const status = result.ready ? "True" : "False";
      const condition: Condition = {
        type: "Ready",
        status,
        reason: result.reason,
        message: result.message,
        lastTransitionTime: previous && previous.status === status ? previous.lastTransitionTime : timestamp(),
      };
      const next: ClusterStatus = {
        ...current.status,
        conditions: [condition],
        lastProbeTime: timestamp(),
        observedGeneration: generation,
        version: result.version ?? current.status?.version,
        platform: result.platform ?? current.status?.platform,
      };
      return { ...current, status: next };
    });
  }
}
