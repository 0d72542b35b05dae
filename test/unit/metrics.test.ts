/**
 * server/metrics.ts without a server: what each sink call does to the exposition, the bounds on
 * label values (verbs, resources per cluster), stream bookkeeping, and that the text prom-client
 * writes from kpass's collectors is what a strict parser accepts. Also the parser's own strictness.
 */
import { describe, expect, test } from "bun:test";
import type { RequestAttributes } from "../../src/auth/request-attributes.ts";
import { API_VERSION } from "../../src/core/api-group.ts";
import type { Cluster } from "../../src/core/cluster.ts";
import type { Pass } from "../../src/core/pass.ts";
import { createCertificateAuthority, issueServingCertificate } from "../../src/edge/pki.ts";
import type { FinishedRequest } from "../../src/proxy/cluster-admission.ts";
import { KPASS_BUCKETS, MAX_RESOURCES_PER_CLUSTER, Metrics, OTHER_RESOURCE } from "../../src/server/metrics.ts";
import { parsePrometheusText, sampleValue, samplesOf } from "../harness/prometheus-text.ts";

const ca = await createCertificateAuthority("metrics-test-ca");
const serving = await issueServingCertificate(ca, { commonName: "kpass", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });

function cluster(name: string, ready: boolean, version?: string): Cluster {
  return { apiVersion: API_VERSION, kind: "Cluster", metadata: { name }, spec: { access: { endpoint: "https://127.0.0.1:1" } }, status: { conditions: [{ type: "Ready", status: ready ? "True" : "False", reason: "x", message: "x", lastTransitionTime: "2026-01-01T00:00:00Z" }], version } } as unknown as Cluster;
}

function pass(name: string, expiresInSeconds?: number): Pass {
  const expiresAt = expiresInSeconds === undefined ? undefined : new Date(Date.now() + expiresInSeconds * 1000).toISOString();
  return { apiVersion: API_VERSION, kind: "Pass", metadata: { name }, spec: { user: name, expiresAt } } as Pass;
}

function metrics(options: { clusters?: Cluster[]; passes?: Pass[]; auditErrors?: number } = {}): Metrics {
  return new Metrics({ clusters: () => options.clusters ?? [], passes: () => options.passes ?? [], servingCertificatePem: () => serving.certPem, auditWriteErrors: () => options.auditErrors ?? 0 });
}

const attrs = (verb: string, resource: string, subresource = ""): RequestAttributes => ({ isResourceRequest: resource !== "", verb, apiGroup: "", apiVersion: "v1", resource, subresource, namespace: "default", name: "web-0", path: resource === "" ? "/api" : "/api/v1/namespaces/default/pods/web-0" });

function request(cluster: string, a: RequestAttributes, status: number, extra: Partial<FinishedRequest> = {}): FinishedRequest {
  return { cluster, attributes: a, status, bytesIn: 0, bytesOut: 0, timing: { totalMs: 3, upstreamMs: 2, answered: true }, ...extra };
}

const scrape = async (m: Metrics) => parsePrometheusText((await m.render()).text);

describe("request series", () => {
  test("one count per finished request; resource[/subresource], \"\" for non-resource; unknown verbs are other", async () => {
    const m = metrics();
    m.finished(request("a", attrs("get", "pods"), 200));
    m.finished(request("a", attrs("get", "pods"), 200));
    m.finished(request("a", attrs("get", "pods", "log"), 200));
    m.finished(request("a", attrs("get", ""), 200));
    m.finished(request("a", attrs("brew", ""), 405));
    m.finished(request("a", attrs("", "pods"), 405));
    const f = await scrape(m);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "a", verb: "get", resource: "pods", code: "200" })).toBe(2);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "a", verb: "get", resource: "pods/log", code: "200" })).toBe(1);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "a", verb: "get", resource: "", code: "200" })).toBe(1);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "a", verb: "other", resource: "", code: "405" })).toBe(1);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "a", verb: "other", resource: "pods", code: "405" })).toBe(1);
  });

  test("resources are bounded per cluster: malformed names and those past the bound become _other", async () => {
    const m = metrics();
    m.finished(request("a", attrs("get", "Pods; DROP"), 404));
    for (let i = 0; i < MAX_RESOURCES_PER_CLUSTER + 50; i++) m.finished(request("a", attrs("get", `r${i}`), 404));
    m.finished(request("b", attrs("get", "r999"), 404));
    const f = await scrape(m);
    const resources = new Set(samplesOf(f, "kpass_proxy_requests_total", { cluster: "a" }).map((s) => s.labels.resource));
    expect(resources.size).toBe(MAX_RESOURCES_PER_CLUSTER + 1);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "a", resource: OTHER_RESOURCE })).toBe(51);
    // Another cluster has its own allowance.
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "b", resource: "r999" })).toBe(1);
  });

  test("histograms: kpass's share is the total minus the cluster's; an unanswered request has no upstream observation", async () => {
    const m = metrics();
    m.finished(request("a", attrs("get", "pods"), 200, { timing: { totalMs: 10.5, upstreamMs: 10, answered: true } }));
    m.finished(request("a", attrs("get", "pods"), 503, { timing: { totalMs: 10_000.2, upstreamMs: 10_000, answered: false } }));
    const f = await scrape(m);
    expect(sampleValue(f, "kpass_proxy_request_duration_seconds_count", { cluster: "a", verb: "get" })).toBe(2);
    expect(sampleValue(f, "kpass_proxy_request_duration_seconds_sum", { cluster: "a", verb: "get" })).toBeCloseTo(0.0007, 9);
    // Cumulative, and `le` inclusive: 0.5 ms falls in le="0.0005".
    expect(sampleValue(f, "kpass_proxy_request_duration_seconds_bucket", { cluster: "a", verb: "get", le: "0.0001" })).toBe(0);
    expect(sampleValue(f, "kpass_proxy_request_duration_seconds_bucket", { cluster: "a", verb: "get", le: "0.00025" })).toBe(1);
    expect(sampleValue(f, "kpass_proxy_request_duration_seconds_bucket", { cluster: "a", verb: "get", le: "0.0005" })).toBe(2);
    expect(samplesOf(f, "kpass_proxy_request_duration_seconds_bucket", { cluster: "a", verb: "get" })).toHaveLength(KPASS_BUCKETS.length + 1);
    expect(sampleValue(f, "kpass_upstream_response_duration_seconds_count", { cluster: "a", verb: "get" })).toBe(1);
    expect(sampleValue(f, "kpass_upstream_response_duration_seconds_sum", { cluster: "a", verb: "get" })).toBeCloseTo(0.01, 9);
  });
});

describe("streams and tunnels", () => {
  test("open streams go up on open and down when finished; streams stay out of the histograms", async () => {
    const m = metrics();
    m.streamOpened("a", "watch");
    m.streamOpened("a", "watch");
    m.streamOpened("a", "exec");
    let f = await scrape(m);
    expect(sampleValue(f, "kpass_open_streams", { cluster: "a", kind: "watch" })).toBe(2);
    expect(sampleValue(f, "kpass_open_streams", { cluster: "a", kind: "exec" })).toBe(1);
    m.finished(request("a", attrs("watch", "pods"), 200, { stream: "watch" }));
    m.finished(request("a", attrs("create", "pods", "exec"), 101, { stream: "exec", bytesIn: 10, bytesOut: 20 }));
    f = await scrape(m);
    expect(sampleValue(f, "kpass_open_streams", { cluster: "a", kind: "watch" })).toBe(1);
    expect(sampleValue(f, "kpass_open_streams", { cluster: "a", kind: "exec" })).toBe(0);
    expect(samplesOf(f, "kpass_proxy_request_duration_seconds_count")).toEqual([]);
    expect(sampleValue(f, "kpass_tunnel_bytes_total", { cluster: "a", direction: "in" })).toBe(10);
    expect(sampleValue(f, "kpass_tunnel_bytes_total", { cluster: "a", direction: "out" })).toBe(20);
  });

  test("an open tunnel's bytes are read at scrape time and handed over to the total when it closes", async () => {
    const m = metrics();
    const live = { bytesIn: 5, bytesOut: 7 };
    const closed = m.tunnelOpened("a", () => live);
    expect(sampleValue(await scrape(m), "kpass_tunnel_bytes_total", { cluster: "a", direction: "in" })).toBe(5);
    live.bytesIn = 50;
    expect(sampleValue(await scrape(m), "kpass_tunnel_bytes_total", { cluster: "a", direction: "in" })).toBe(50);
    closed();
    m.finished(request("a", attrs("create", "pods", "portforward"), 101, { stream: "portforward", bytesIn: 50, bytesOut: 7 }));
    const f = await scrape(m);
    expect(sampleValue(f, "kpass_tunnel_bytes_total", { cluster: "a", direction: "in" })).toBe(50);
    expect(sampleValue(f, "kpass_tunnel_bytes_total", { cluster: "a", direction: "out" })).toBe(7);
  });

  test("a deleted cluster's series are dropped, another cluster's (even a prefix of its name) kept", async () => {
    const m = metrics();
    m.finished(request("a", attrs("get", "pods"), 200));
    m.finished(request("ab", attrs("get", "pods"), 200));
    m.streamOpened("a", "watch");
    m.forgetCluster("a");
    const f = await scrape(m);
    expect(samplesOf(f, "kpass_proxy_requests_total", { cluster: "a" })).toEqual([]);
    expect(samplesOf(f, "kpass_open_streams", { cluster: "a" })).toEqual([]);
    expect(sampleValue(f, "kpass_proxy_requests_total", { cluster: "ab" })).toBe(1);
  });
});

describe("state read at scrape time", () => {
  test("clusters, passes, expiry windows, certificate, audit errors, refusals", async () => {
    const m = metrics({ clusters: [cluster("up", true, "v1.33.1"), cluster("down", false)], passes: [pass("forever"), pass("soon", 1800), pass("day", 20 * 3600), pass("week", 3 * 86_400), pass("gone", -60)], auditErrors: 3 });
    m.refused(403);
    m.refused(403);
    m.refused(401);
    m.observe(200);
    const f = await scrape(m);
    expect(sampleValue(f, "kpass_cluster_ready", { cluster: "up" })).toBe(1);
    expect(sampleValue(f, "kpass_cluster_ready", { cluster: "down" })).toBe(0);
    expect(sampleValue(f, "kpass_cluster_info", { cluster: "up", version: "v1.33.1" })).toBe(1);
    expect(samplesOf(f, "kpass_cluster_info", { cluster: "down" })).toEqual([]);
    expect(sampleValue(f, "kpass_clusters")).toBe(2);
    expect(sampleValue(f, "kpass_passes")).toBe(5);
    expect(sampleValue(f, "kpass_passes_expiring", { window: "1h" })).toBe(1);
    expect(sampleValue(f, "kpass_passes_expiring", { window: "24h" })).toBe(2);
    expect(sampleValue(f, "kpass_passes_expiring", { window: "7d" })).toBe(3);
    expect(sampleValue(f, "kpass_passes_expiring", { window: "expired" })).toBe(1);
    const min = sampleValue(f, "kpass_pass_min_expiry_seconds")!;
    expect(min).toBeGreaterThan(0);
    expect(min).toBeLessThanOrEqual(1800);
    expect(sampleValue(f, "kpass_serving_certificate_expiry_seconds")!).toBeGreaterThan(86_400);
    expect(sampleValue(f, "kpass_audit_write_errors_total")).toBe(3);
    expect(sampleValue(f, "kpass_refused_requests_total", { code: "403" })).toBe(2);
    expect(sampleValue(f, "kpass_refused_requests_total", { code: "401" })).toBe(1);
    expect(sampleValue(f, "kpass_requests_total", { code: "200" })).toBe(1);
    expect(f.get("kpass_build_info")!.samples[0]!.labels.bun_version).toBe(Bun.version);
  });

  test("without any pass expiry there is no min-expiry sample (rather than a made-up number)", async () => {
    const f = await scrape(metrics({ passes: [pass("forever")] }));
    expect(samplesOf(f, "kpass_pass_min_expiry_seconds")).toEqual([]);
    expect(f.get("kpass_pass_min_expiry_seconds")!.type).toBe("gauge");
  });

  test("label values are escaped so the exposition stays parseable", async () => {
    const m = metrics({ clusters: [cluster("x", true, 'v1"\\\nodd')] });
    const f = await scrape(m);
    expect(samplesOf(f, "kpass_cluster_info")[0]!.labels.version).toBe('v1"\\\nodd');
  });
});

describe("the strict parser", () => {
  const ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
  test("accepts well-formed text", () => {
    expect(sampleValue(parsePrometheusText(ok), "a_total", { x: "1" })).toBe(2);
  });
  for (const [what, text] of [
    ["no final newline", ok.trimEnd()],
    ["a bad metric name", "a-b 1\n"],
    ["a bad label name", 'a{1x="1"} 1\n'],
    ["an unknown escape", 'a{x="\\t"} 1\n'],
    ["an unterminated label value", 'a{x="1} 1\n'],
    ["a duplicate label", 'a{x="1",x="2"} 1\n'],
    ["a bad value", "a 1,5\n"],
    ["a duplicate series", "a 1\na 2\n"],
    ["a second TYPE", "# TYPE a gauge\n# TYPE a gauge\na 1\n"],
    ["TYPE after samples", "a 1\n# TYPE a gauge\n"],
    ["a split family", "a 1\nb 1\na{x=\"1\"} 1\n"],
    ["a gauge sample with a suffix under the gauge's family", "# TYPE a gauge\na 1\na_sum 1\na 2\n"],
    ["a bucket without le", "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n"],
    ["non-cumulative buckets", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ["+Inf differs from _count", '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n'],
  ] as const) {
    test(`rejects ${what}`, () => {
      expect(() => parsePrometheusText(text)).toThrow();
    });
  }
});
