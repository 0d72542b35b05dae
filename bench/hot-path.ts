/**
 * Micro-benchmark of kpass's own per-request work on the proxy path, in-process, without any
 * network: what each step costs in µs, to compare with the CPU µs/req that bench/run.ts measures
 * for kpass and for the bare proxies of the same shape. Bounded: a fixed number of iterations.
 *
 * Run: bun bench/hot-path.ts [--iterations 50000] [--passes 10000]
 */
import { FileSecrets } from "../src/store/secrets.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { hasDotSegment } from "../src/proxy/proxy-path.ts";
import { Authenticator } from "../src/auth/authenticate.ts";
import { authorizeProxy } from "../src/auth/authorize.ts";
import { loadOrCreateSigningKey } from "../src/auth/signing-key.ts";
import { TokenService } from "../src/auth/tokens.ts";
import { ClusterTransports } from "../src/proxy/cluster-transport.ts";
import { planProxy } from "../src/proxy/plan.ts";
import { parseProxyTarget } from "../src/proxy/proxy-path.ts";
import { upstreamHeaders } from "../src/proxy/upstream-headers.ts";
import { isStreaming, requestTimeoutMs } from "../src/proxy/forward.ts";
import { FilePersistence } from "../src/store/file-persistence.ts";
import { ObjectStore } from "../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../src/store/local-backend.ts";
import { createCertificateAuthority } from "../src/edge/pki.ts";
import type { Cluster } from "../src/core/cluster.ts";
import type { Pass } from "../src/core/pass.ts";
import { Counter, Histogram, Registry } from "prom-client";
import { KPASS_BUCKETS, Metrics, UPSTREAM_BUCKETS } from "../src/server/metrics.ts";
import type { FinishedRequest } from "../src/proxy/cluster-admission.ts";

const { values } = parseArgs({ options: { iterations: { type: "string", default: "50000" }, passes: { type: "string", default: "1" } } });
const N = Number(values.iterations);
const PASSES = Number(values.passes);

const dir = mkdtempSync(join(tmpdir(), "kpass-hot-path-"));
try {
  const clock = new RevisionClock();
  const persistence = new FilePersistence(join(dir, "objects"));
  const clusters = new ObjectStore<Cluster>("clusters", new LocalBackend("clusters", clock, persistence));
  const passes = new ObjectStore<Pass>("passes", new LocalBackend("passes", clock, persistence));
  await clusters.load();
  await passes.load();
  const ca = await createCertificateAuthority("hot-path-ca");
  const cluster = await clusters.create({
    apiVersion: "cluster.kpass.dev/v1beta1",
    kind: "Cluster",
    metadata: { name: "c1" },
    spec: { access: { endpoint: "https://127.0.0.1:6443", caBundle: Buffer.from(ca.certPem).toString("base64"), credential: { type: "ServiceAccountToken", serviceAccountToken: "t".repeat(900) } } },
  } as unknown as Cluster);
  const tokens = new TokenService(await loadOrCreateSigningKey(new FileSecrets(dir), "key.jwk"));
  let pass: Pass | undefined;
  for (let i = 0; i < PASSES; i++) {
    pass = await passes.create({ apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name: `p${i}` }, spec: { user: `u${i}`, roles: ["view"], clusters: { names: ["c1"] } } } as unknown as Pass);
  }
  const token = await tokens.mint(pass!.metadata.name, pass!.metadata.uid);
  const authenticator = new Authenticator(tokens, passes);
  const transports = new ClusterTransports();
  const url = "https://127.0.0.1:8443/apis/cluster.kpass.dev/v1beta1/clusters/c1/proxy/api/v1/namespaces/default/pods/web-0";
  const clientHeaders = new Headers({ host: "127.0.0.1:8443", authorization: `Bearer ${token}`, "user-agent": "kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef", accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;g=meta.k8s.io;v=v1,application/json", "accept-encoding": "gzip" });
  const upstreamResponseHeaders = new Headers({ "content-type": "application/json", "cache-control": "no-cache, private", date: new Date().toUTCString(), "content-length": "3038", "audit-id": crypto.randomUUID(), "x-kubernetes-pf-flowschema-uid": crypto.randomUUID(), "x-kubernetes-pf-prioritylevel-uid": crypto.randomUUID() });
  // The header lines as the edge's head parser hands them on (it builds the Headers from them).
  const rawHeaders: [string, string][] = [...clientHeaders].map(([n, v]) => [n, v]);
  const identity = await authenticator.authenticate(clientHeaders);
  const parsed = parseProxyTarget(new URL(url).pathname)!;
  const transport = transports.for(cluster);

  const results: [string, number][] = [];
  async function time(name: string, fn: () => unknown): Promise<void> {
    for (let i = 0; i < Math.min(N, 5000); i++) await fn(); // warm-up / JIT
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await fn();
    const us = ((performance.now() - t0) * 1000) / N;
    results.push([name, us]);
  }
  const syncTime = (name: string, fn: () => unknown) => time(name, fn);

  const target = new URL(url).pathname;
  await syncTime("hasDotSegment + parseProxyTarget", () => !hasDotSegment(target) && parseProxyTarget(target));
  await time("authenticator.authenticate (cached token)", () => authenticator.authenticate(clientHeaders));
  await syncTime("authorizeProxy (request attributes, rules, impersonation)", () => authorizeProxy(identity, cluster, { method: "GET", path: parsed.path, search: parsed.search, headers: clientHeaders, rawHeaders, upgrade: false }));
  await syncTime("transports.for (fingerprint = JSON.stringify(spec.access))", () => transports.for(cluster));
  await syncTime("upstreamHeaders (copy, hygiene, assertClean)", () => upstreamHeaders(clientHeaders, transport, undefined, { rawHeaders }));
  await syncTime("planProxy (all of the above but authn)", () => planProxy({ clusters, transports }, identity, parsed, { method: "GET", headers: clientHeaders, rawHeaders, upgrade: false }));
  await syncTime("isStreaming + requestTimeoutMs (no query)", () => isStreaming("get", parsed.search) || requestTimeoutMs(parsed.search));
  await syncTime("forward bookkeeping (AbortController, listener, timer)", () => {
    const abort = new AbortController();
    const signal = new AbortController().signal;
    const onAbort = () => abort.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => abort.abort(), 15_000);
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  });
  await syncTime("response rewrap (new Headers, 6 deletes, new Response)", () => {
    const headers = new Headers(upstreamResponseHeaders);
    for (const name of ["connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"]) headers.delete(name);
    return new Response(null, { status: 200, headers });
  });
  // Metrics on the request path: kpass's Maps, and the same three updates through prom-client's
  // own Counter and Histograms (what it would cost to use them directly; kpass does not).
  const metrics = new Metrics({ clusters: () => [], passes: () => [], servingCertificatePem: () => "", auditWriteErrors: () => 0 });
  const finished: FinishedRequest = { cluster: "c1", attributes: authorizeProxy(identity, cluster, { method: "GET", path: parsed.path, search: parsed.search, headers: clientHeaders, upgrade: false }).attributes, status: 200, bytesIn: 0, bytesOut: 3038, timing: { totalMs: 0.4, upstreamMs: 0.3, answered: true } };
  await syncTime("metrics: Metrics.finished (1 counter, 2 histograms, plain Maps)", () => metrics.finished(finished));
  const registry = new Registry();
  const counter = new Counter({ name: "c_total", help: "c", labelNames: ["cluster", "verb", "resource", "code"], registers: [registry] });
  const kpassHistogram = new Histogram({ name: "k_seconds", help: "k", labelNames: ["cluster", "verb"], buckets: KPASS_BUCKETS, registers: [registry] });
  const upstreamHistogram = new Histogram({ name: "u_seconds", help: "u", labelNames: ["cluster", "verb"], buckets: UPSTREAM_BUCKETS, registers: [registry] });
  await syncTime("metrics: the same through prom-client Counter.inc + 2 Histogram.observe", () => {
    counter.inc({ cluster: "c1", verb: "get", resource: "pods", code: "200" });
    kpassHistogram.observe({ cluster: "c1", verb: "get" }, 0.0001);
    upstreamHistogram.observe({ cluster: "c1", verb: "get" }, 0.0003);
  });
  await syncTime("new Request (what Bun.serve hands the handler, for scale)", () => new Request(url, { headers: clientHeaders }));

  const width = Math.max(...results.map(([n]) => n.length));
  console.log(`kpass hot path, ${N} iterations each, ${PASSES} pass(es) in the store (µs per call):`);
  for (const [name, us] of results) console.log(`  ${name.padEnd(width)}  ${us.toFixed(2).padStart(7)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
