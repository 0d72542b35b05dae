/**
 * /metrics after real kubectl traffic (1.27 and 1.33: REST get and list, a refusal, a watch,
 * logs -f, an exec), read with a strict text-format parser (test/harness/prometheus-text.ts) and checked
 * against the requests the test made: series, values, label cardinality (no pass, user, object
 * name or path in any label), who may scrape, and the unauthenticated loopback port. Run once with
 * the audit log on (responses metered on their way out) and once off (metrics alone).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { createStreamUpgradeHandler, type StreamUpgradeFixture } from "./fixture/streams/index.ts";
import { clusterManifest, createPass, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { kubectlBinary, kubectlEnv, runKubectl, type KubectlVersion } from "./harness/kubectl.ts";
import { parsePrometheusText, sampleValue, samplesOf, type Family } from "./harness/prometheus-text.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const VERSIONS: KubectlVersion[] = ["1.27", "1.33"];
const PASSES = { reader: { pass: "reader-pass", user: "reader-user" }, scraper: { pass: "scraper-pass", user: "scraper-user" } };
/** Label names kpass's own series may carry: all bounded (clusters, verbs, resources, codes, kinds). */
const KPASS_LABELS = new Set(["cluster", "verb", "resource", "code", "kind", "direction", "version", "window", "le", "bun_version"]);

for (const audit of ["file", "off"] as const) {
  describe(`metrics with --audit ${audit}`, () => {
    let kpass: KpassProcess;
    let alpha: TestCluster;
    let streams: StreamUpgradeFixture;
    let metricsUrl: string;
    let readerConfig: string;
    let scraperConfig: string;
    let readerToken: string;
    let scraperToken: string;

    /** Scrapes the loopback port and parses what it says (throws on anything Prometheus would reject). */
    async function scrape(): Promise<Map<string, Family>> {
      const response = await fetch(metricsUrl);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      return parsePrometheusText(await response.text());
    }

    const value = async (name: string, labels: Record<string, string> = {}) => sampleValue(await scrape(), name, labels);

    beforeAll(async () => {
      streams = createStreamUpgradeHandler();
      alpha = await startTestCluster({ credential: { type: "token", token: "alpha-token" }, upgrade: streams.handler, gitVersion: "v1.31.4" });
      kpass = await startKpass({ args: ["--audit", audit, "--metrics-listen", "127.0.0.1:0"] });
      metricsUrl = /metrics \(no authentication, loopback\): (http:\/\/\S+)/.exec(kpass.stderr())![1]!;
      expect((await kpass.api("POST", CLUSTERS, clusterManifest("alpha", alpha, { token: "alpha-token" }))).status).toBe(201);
      const down = { ...clusterManifest("down", alpha, { token: "x" }), spec: { access: { endpoint: "https://127.0.0.1:1", credential: { type: "ServiceAccountToken", serviceAccountToken: "x" } } } };
      expect((await kpass.api("POST", CLUSTERS, down)).status).toBe(201);
      readerToken = await createPass(kpass, PASSES.reader.pass, { user: PASSES.reader.user, roles: ["view"], rules: [{ verbs: ["create"], apiGroups: [""], resources: ["pods/exec"] }], clusters: { names: ["alpha", "down"] } });
      scraperToken = await createPass(kpass, PASSES.scraper.pass, { user: PASSES.scraper.user, rules: [{ verbs: ["get"], nonResourceURLs: ["/metrics"] }], ttl: "2h" });
      readerConfig = writeKubeconfig(kpass, readerToken, { alpha: proxyUrl(kpass, "alpha"), kpass: kpass.url });
      scraperConfig = writeKubeconfig(kpass, scraperToken, { kpass: kpass.url });
    });

    afterAll(async () => {
      await kpass?.stop();
      await alpha?.stop();
      await streams?.close();
      if (kpass) removeDataDir(kpass.dataDir);
    });

    const kubectl = (version: KubectlVersion, args: string[], stdin?: string) => runKubectl(version, ["--kubeconfig", readerConfig, "--context", "alpha", ...args], { stdin });

    test("REST get and list are counted by cluster, verb, resource and code, once per request", async () => {
      const before = await scrape();
      const listBefore = sampleValue(before, "kpass_proxy_requests_total", { cluster: "alpha", verb: "list", resource: "pods", code: "200" }) ?? 0;
      const getBefore = sampleValue(before, "kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "pods", code: "200" }) ?? 0;
      const missingBefore = sampleValue(before, "kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "pods", code: "404" }) ?? 0;
      for (const version of VERSIONS) {
        const list = await kubectl(version, ["get", "pods", "-o", "name"]);
        expect(list.stdout).toContain("pod/web-0");
        const get = await kubectl(version, ["get", "pod", "web-0", "-o", "name"]);
        expect(get.stdout.trim()).toBe("pod/web-0");
        const missing = await kubectl(version, ["get", "pod", "no-such-pod"]);
        expect(missing.exitCode).not.toBe(0);
      }
      const after = await scrape();
      expect(sampleValue(after, "kpass_proxy_requests_total", { cluster: "alpha", verb: "list", resource: "pods", code: "200" })).toBe(listBefore + VERSIONS.length);
      expect(sampleValue(after, "kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "pods", code: "200" })).toBe(getBefore + VERSIONS.length);
      expect(sampleValue(after, "kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "pods", code: "404" })).toBe(missingBefore + VERSIONS.length);
      // Discovery (/api, /apis) is a non-resource request: resource "".
      expect(sampleValue(after, "kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "", code: "200" })).toBeGreaterThan(0);
      // Every request the cluster received from kubectl through kpass is counted exactly once.
      const throughKpass = alpha.requests.filter((r) => String(r.headers["user-agent"] ?? "").startsWith("kubectl")).length;
      const counted = samplesOf(after, "kpass_proxy_requests_total", { cluster: "alpha" }).reduce((sum, s) => sum + s.value, 0);
      expect(counted).toBe(throughKpass);
    });

    test("latency histograms: one observation per REST request, kpass's share and the cluster's", async () => {
      const families = await scrape();
      const listed = sampleValue(families, "kpass_proxy_requests_total", { cluster: "alpha", verb: "list", resource: "pods", code: "200" })!;
      const lists = samplesOf(families, "kpass_proxy_requests_total", { cluster: "alpha", verb: "list" }).reduce((sum, s) => sum + s.value, 0);
      expect(lists).toBeGreaterThanOrEqual(listed);
      expect(sampleValue(families, "kpass_proxy_request_duration_seconds_count", { cluster: "alpha", verb: "list" })).toBe(lists);
      expect(sampleValue(families, "kpass_upstream_response_duration_seconds_count", { cluster: "alpha", verb: "list" })).toBe(lists);
      expect(sampleValue(families, "kpass_proxy_request_duration_seconds_sum", { cluster: "alpha", verb: "list" })).toBeGreaterThan(0);
      expect(sampleValue(families, "kpass_upstream_response_duration_seconds_sum", { cluster: "alpha", verb: "list" })).toBeGreaterThan(0);
      expect(families.get("kpass_proxy_request_duration_seconds")!.type).toBe("histogram");
    });

    test("a refused request is counted by its code and never reaches the per-cluster series", async () => {
      const before = await scrape();
      const forbidden = sampleValue(before, "kpass_refused_requests_total", { code: "403" }) ?? 0;
      const clusterSeries = samplesOf(before, "kpass_proxy_requests_total").reduce((sum, s) => sum + s.value, 0);
      const refusedBefore = alpha.requests.length;
      // view may not delete: kpass refuses it (after kubectl's own discovery requests, which pass).
      const result = await kubectl("1.33", ["delete", "configmap", "app-config", "-n", "default"]);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toContain("forbidden");
      const after = await scrape();
      expect(sampleValue(after, "kpass_refused_requests_total", { code: "403" })).toBe(forbidden + 1);
      expect(alpha.requests.slice(refusedBefore).some((r) => r.method === "DELETE")).toBe(false);
      const discovery = alpha.requests.slice(refusedBefore).filter((r) => String(r.headers["user-agent"] ?? "").startsWith("kubectl")).length;
      expect(samplesOf(after, "kpass_proxy_requests_total").reduce((sum, s) => sum + s.value, 0)).toBe(clusterSeries + discovery);
      const unauthorized = sampleValue(after, "kpass_refused_requests_total", { code: "401" }) ?? 0;
      const anonymous = await fetch(`${proxyUrl(kpass, "alpha")}/api/v1/pods`, { headers: { authorization: "Bearer not-a-pass" }, tls: { ca: kpass.caPem } });
      expect(anonymous.status).toBe(401);
      expect(await value("kpass_refused_requests_total", { code: "401" })).toBe(unauthorized + 1);
    });

    for (const version of VERSIONS) {
      test(`kubectl ${version}: a watch is an open stream while it is open and a counted request after; no latency observation`, async () => {
        const before = await scrape();
        const watches = sampleValue(before, "kpass_proxy_requests_total", { cluster: "alpha", verb: "watch", resource: "configmaps", code: "200" }) ?? 0;
        const watcher = Bun.spawn([kubectlBinary(version), "--kubeconfig", readerConfig, "--context", "alpha", "get", "configmaps", "-n", "default", "-w", "-o", "name"], { stdout: "pipe", stderr: "pipe", env: kubectlEnv() });
        try {
          await eventually(async () => ((await value("kpass_open_streams", { cluster: "alpha", kind: "watch" })) === 1 ? true : undefined), 15_000);
        } finally {
          watcher.kill();
          await watcher.exited;
        }
        await eventually(async () => ((await value("kpass_open_streams", { cluster: "alpha", kind: "watch" })) === 0 ? true : undefined), 10_000);
        const after = await scrape();
        expect(sampleValue(after, "kpass_proxy_requests_total", { cluster: "alpha", verb: "watch", resource: "configmaps", code: "200" })).toBe(watches + 1);
        expect(samplesOf(after, "kpass_proxy_request_duration_seconds_count", { verb: "watch" })).toEqual([]);
        expect(samplesOf(after, "kpass_upstream_response_duration_seconds_count", { verb: "watch" })).toEqual([]);
      });

      test(`kubectl ${version}: logs -f is an open "follow" stream until kubectl leaves`, async () => {
        const logs = sampleValue(await scrape(), "kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "pods/log", code: "200" }) ?? 0;
        const follower = Bun.spawn([kubectlBinary(version), "--kubeconfig", readerConfig, "--context", "alpha", "logs", "-f", "web-0"], { stdout: "pipe", stderr: "pipe", env: kubectlEnv() });
        try {
          await eventually(async () => ((await value("kpass_open_streams", { cluster: "alpha", kind: "follow" })) === 1 ? true : undefined), 15_000);
        } finally {
          follower.kill();
          await follower.exited;
        }
        await eventually(async () => ((await value("kpass_open_streams", { cluster: "alpha", kind: "follow" })) === 0 ? true : undefined), 10_000);
        expect(await value("kpass_proxy_requests_total", { cluster: "alpha", verb: "get", resource: "pods/log", code: "200" })).toBe(logs + 1);
      });

      test(`kubectl ${version}: exec is an open stream with bytes counted while it runs, and after`, async () => {
        const before = await scrape();
        const execs = sampleValue(before, "kpass_proxy_requests_total", { cluster: "alpha", verb: "create", resource: "pods/exec", code: "101" }) ?? 0;
        const inBefore = sampleValue(before, "kpass_tunnel_bytes_total", { cluster: "alpha", direction: "in" }) ?? 0;
        const outBefore = sampleValue(before, "kpass_tunnel_bytes_total", { cluster: "alpha", direction: "out" }) ?? 0;
        const proc = Bun.spawn([kubectlBinary(version), "--kubeconfig", readerConfig, "--context", "alpha", "exec", "-i", "web-0", "--", "cat"], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: kubectlEnv() });
        let stdout = "";
        const reading = (async () => {
          for await (const chunk of proc.stdout) stdout += new TextDecoder().decode(chunk);
        })();
        try {
          proc.stdin.write("metrics ping\n");
          await proc.stdin.flush();
          await eventually(() => (stdout.includes("metrics ping") ? true : undefined), 15_000);
          const open = await scrape();
          expect(sampleValue(open, "kpass_open_streams", { cluster: "alpha", kind: "exec" })).toBe(1);
          // An open tunnel's bytes are already in the counter: a long port-forward shows before it ends.
          expect(sampleValue(open, "kpass_tunnel_bytes_total", { cluster: "alpha", direction: "in" })!).toBeGreaterThan(inBefore);
          expect(sampleValue(open, "kpass_tunnel_bytes_total", { cluster: "alpha", direction: "out" })!).toBeGreaterThan(outBefore);
        } finally {
          await proc.stdin.end();
          const timer = setTimeout(() => proc.kill(), 15_000);
          await proc.exited;
          clearTimeout(timer);
          await reading;
        }
        expect(proc.exitCode).toBe(0);
        await eventually(async () => ((await value("kpass_open_streams", { cluster: "alpha", kind: "exec" })) === 0 ? true : undefined), 10_000);
        const after = await scrape();
        expect(sampleValue(after, "kpass_proxy_requests_total", { cluster: "alpha", verb: "create", resource: "pods/exec", code: "101" })).toBe(execs + 1);
        expect(sampleValue(after, "kpass_tunnel_bytes_total", { cluster: "alpha", direction: "in" })!).toBeGreaterThan(inBefore);
        expect(sampleValue(after, "kpass_tunnel_bytes_total", { cluster: "alpha", direction: "out" })!).toBeGreaterThan(outBefore);
        expect(samplesOf(after, "kpass_proxy_request_duration_seconds_count", { verb: "create" })).toEqual([]);
      });
    }

    test("cluster health and version, pass and certificate expiry, audit errors, process metrics", async () => {
      await eventually(async () => ((await value("kpass_cluster_ready", { cluster: "down" })) === 0 && (await value("kpass_cluster_ready", { cluster: "alpha" })) === 1 ? true : undefined), 15_000);
      const beforeMs = Date.now();
      const families = await scrape();
      const afterMs = Date.now();
      expect(sampleValue(families, "kpass_cluster_info", { cluster: "alpha" })).toBe(1);
      expect(samplesOf(families, "kpass_cluster_info", { cluster: "alpha" })[0]!.labels.version).toBe("v1.31.4");
      expect(samplesOf(families, "kpass_cluster_info", { cluster: "down" })).toEqual([]);
      expect(sampleValue(families, "kpass_clusters")).toBe(2);
      expect(sampleValue(families, "kpass_passes")).toBe(3);
      // Only the scraper pass expires (ttl 2h): within 24h and 7d, not within 1h.
      expect(sampleValue(families, "kpass_passes_expiring", { window: "1h" })).toBe(0);
      expect(sampleValue(families, "kpass_passes_expiring", { window: "24h" })).toBe(1);
      expect(sampleValue(families, "kpass_passes_expiring", { window: "7d" })).toBe(1);
      expect(sampleValue(families, "kpass_passes_expiring", { window: "expired" })).toBe(0);
      const scraper = await (await kpass.api("GET", "/apis/cluster.kpass.dev/v1beta1/passes/scraper-pass")).json();
      const expiresAt = Date.parse(scraper.spec.expiresAt);
      const minExpiry = sampleValue(families, "kpass_pass_min_expiry_seconds")!;
      expect(minExpiry).toBeGreaterThanOrEqual((expiresAt - afterMs) / 1000);
      expect(minExpiry).toBeLessThanOrEqual((expiresAt - beforeMs) / 1000);
      const notAfter = Date.parse(new X509Certificate(readFileSync(join(kpass.dataDir, "serving.crt"), "utf8")).validTo);
      const certExpiry = sampleValue(families, "kpass_serving_certificate_expiry_seconds")!;
      expect(certExpiry).toBeGreaterThanOrEqual((notAfter - afterMs) / 1000);
      expect(certExpiry).toBeLessThanOrEqual((notAfter - beforeMs) / 1000);
      expect(sampleValue(families, "kpass_audit_write_errors_total")).toBe(0);
      expect(families.get("kpass_audit_write_errors_total")!.type).toBe("counter");
      // prom-client's default collectors, on Bun: these read /proc and process.cpuUsage.
      expect(sampleValue(families, "process_resident_memory_bytes")!).toBeGreaterThan(10 * 2 ** 20);
      expect(sampleValue(families, "process_cpu_seconds_total")!).toBeGreaterThan(0);
      expect(sampleValue(families, "process_open_fds")!).toBeGreaterThan(0);
      expect(sampleValue(families, "process_start_time_seconds")!).toBeLessThanOrEqual(afterMs / 1000);
      expect(sampleValue(families, "kpass_requests_total", { code: "200" })!).toBeGreaterThan(0);
    });

    test("label cardinality: only bounded labels, and no pass, user, object name, namespace or path in any value", async () => {
      const families = await scrape();
      const forbidden = new Set([...Object.values(PASSES).flatMap((p) => [p.pass, p.user]), "admin", "web-0", "app-config", "no-such-pod", "default"]);
      let checked = 0;
      for (const family of families.values()) {
        for (const sample of family.samples) {
          for (const [name, labelValue] of Object.entries(sample.labels)) {
            if (family.name.startsWith("kpass_")) expect(KPASS_LABELS.has(name)).toBe(true);
            expect(forbidden.has(labelValue)).toBe(false);
            expect(labelValue.startsWith("/")).toBe(false);
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThan(50);
    });

    // Prometheus's own linter, where it is installed (Debian's `prometheus` package): names, types, suffixes.
    test.skipIf(!Bun.which("promtool"))("promtool check metrics finds nothing to complain about", async () => {
      const text = await (await fetch(metricsUrl)).text();
      const proc = Bun.spawn(["promtool", "check", "metrics"], { stdin: new Blob([text]), stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      expect(`${out}${err}`).toBe("");
      expect(code).toBe(0);
    });

    test("who may scrape: an admin pass and a pass with get on /metrics (also through kubectl); others get kube's 403", async () => {
      const scraped = await runKubectl("1.33", ["--kubeconfig", scraperConfig, "--context", "kpass", "get", "--raw", "/metrics"]);
      expect(scraped.exitCode).toBe(0);
      expect(sampleValue(parsePrometheusText(scraped.stdout), "kpass_clusters")).toBe(2);
      expect((await kpass.api("GET", "/metrics")).status).toBe(200);
      const refused = await kpass.api("GET", "/metrics", undefined, { token: readerToken });
      expect(refused.status).toBe(403);
      expect((await refused.json()).message).toBe(`forbidden: User "reader-user" cannot get path "/metrics": pass "reader-pass" is not an admin pass and has no rule allowing get on the non-resource URL /metrics`);
      const canI = await runKubectl("1.33", ["--kubeconfig", scraperConfig, "--context", "kpass", "auth", "can-i", "get", "/metrics"]);
      expect(canI.stdout.trim()).toBe("yes");
      const readerCanI = await runKubectl("1.33", ["--kubeconfig", readerConfig, "--context", "kpass", "auth", "can-i", "get", "/metrics"]);
      expect(readerCanI.stdout.trim()).toStartWith("no");
    });

    test("the loopback port serves /metrics only, to GET and HEAD, without authentication", async () => {
      expect((await fetch(metricsUrl, { method: "HEAD" })).status).toBe(200);
      const post = await fetch(metricsUrl, { method: "POST" });
      expect(post.status).toBe(405);
      expect(post.headers.get("allow")).toBe("GET, HEAD");
      expect((await fetch(metricsUrl.replace("/metrics", "/healthz"))).status).toBe(404);
      expect(new URL(metricsUrl).hostname).toBe("127.0.0.1");
    });
  });
}

describe("--metrics off and --metrics-listen", () => {
  test("--metrics off keeps /metrics but records no per-request series (the bench's baseline)", async () => {
    const cluster = await startTestCluster({ credential: { type: "token", token: "t" } });
    const kpass = await startKpass({ args: ["--metrics", "off", "--metrics-listen", "127.0.0.1:0"] });
    try {
      expect((await kpass.api("POST", CLUSTERS, clusterManifest("c", cluster, { token: "t" }))).status).toBe(201);
      const pod = await fetch(`${proxyUrl(kpass, "c")}/api/v1/namespaces/default/pods/web-0`, { headers: { authorization: `Bearer ${kpass.adminToken}` }, tls: { ca: kpass.caPem } });
      expect(pod.status).toBe(200);
      await pod.text();
      const url = /metrics \(no authentication, loopback\): (http:\/\/\S+)/.exec(kpass.stderr())![1]!;
      const families = parsePrometheusText(await (await fetch(url)).text());
      expect(samplesOf(families, "kpass_proxy_requests_total")).toEqual([]);
      expect(sampleValue(families, "kpass_clusters")).toBe(1);
    } finally {
      await kpass.stop();
      await cluster.stop();
      removeDataDir(kpass.dataDir);
    }
  });

  test("a non-loopback address is refused at start, naming the flag", async () => {
    const error = await startKpass({ args: ["--metrics-listen", "0.0.0.0:0"] }).then(
      (k) => {
        void k.stop();
        return "started";
      },
      (e: Error) => e.message,
    );
    expect(error).toContain('--metrics-listen: "0.0.0.0" is not a loopback address');
  });
});
