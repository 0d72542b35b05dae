/**
 * Watches at scale: N concurrent watches through kpass vs directly to the same upstream (the
 * in-process test fixture cluster), one raw TLS connection + raw HTTP/1.1 watch each, opened 64 at
 * a time (as test/watches-scale.test.ts does). For each N, both paths in turn: open N watches,
 * write K=5 configmaps behind the API (one every 200 ms), count events delivered/missed per watch
 * and their delivery latency (receive time minus write time, same clock), and kpass's VmRSS and
 * descriptor count before and with the watches. Everything is closed before the next N.
 *
 *   node_modules/.bin/bun bench/watches.ts [--counts 1000,5000,9000]
 *
 * This process holds both ends of each watch it opens (client socket + fixture's server socket),
 * so one path at a time needs ~2N descriptors here; N is capped to what the soft RLIMIT_NOFILE
 * allows (nothing is raised). Every phase is bounded in time. Prints a markdown table.
 */
import { readdirSync, readFileSync } from "node:fs";
import { connect, type TLSSocket } from "node:tls";
import { cpus } from "node:os";
import { RESOURCE_TYPES } from "../test/fixture/cluster/resources.ts";
import { startTestCluster, type TestCluster } from "../test/fixture/cluster/server.ts";
import { clusterManifest, removeDataDir, startKpass, type KpassProcess } from "../test/harness/kpass.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const CONFIGMAPS = RESOURCE_TYPES.find((t) => t.resource === "configmaps")!;
const NAMESPACES = RESOURCE_TYPES.find((t) => t.resource === "namespaces")!;
const K = 5;
const EVENT_GAP_MS = 200;
const OPEN_CONCURRENCY = 64;
const OPEN_PHASE_MS = 180_000;
const DELIVERY_WAIT_MS = 15_000;
const FD_MARGIN = 300;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const counts = (arg("counts") ?? "1000,5000,9000").split(",").map((s) => Number(s.trim())).filter((n) => n > 0);

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? "0");
}
function softNofile(): number {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files")) ?? "";
  return Number(/Max open files\s+(\d+)/.exec(line)?.[1] ?? "1024");
}
function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(50);
  }
  return true;
}

/** One watch on its own TLS connection; records when each event name is first seen. */
class Watch {
  socket!: TLSSocket;
  status = 0;
  closed = false;
  private head = "";
  private tail = "";
  readonly seen = new Map<string, number>();

  static open(url: string, caPem: string, target: string, token: string, timeoutMs = 15_000): Promise<Watch | string> {
    const { hostname, port, host } = new URL(url);
    const w = new Watch();
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: Watch | string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (typeof r === "string") w.close();
        resolve(r);
      };
      const timer = setTimeout(() => finish("timeout"), timeoutMs);
      const socket = connect({ host: hostname, port: Number(port), ca: caPem, servername: "localhost", ALPNProtocols: ["http/1.1"] }, () => {
        socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nAccept: application/json\r\nUser-Agent: kpass-bench-watches\r\n\r\n`);
      });
      w.socket = socket;
      socket.on("data", (chunk: Buffer) => {
        const now = performance.now();
        let text = chunk.toString("utf8");
        if (!w.status) {
          w.head += text;
          const end = w.head.indexOf("\r\n\r\n");
          if (end < 0) return;
          w.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(w.head)?.[1] ?? "0");
          text = w.head.slice(end + 4);
          w.head = "";
          finish(w.status === 200 ? w : `status ${w.status}`);
        }
        const scan = w.tail + text;
        for (const m of scan.matchAll(/"name":"(wev-[0-9a-z-]+)"/g)) if (!w.seen.has(m[1]!)) w.seen.set(m[1]!, now);
        w.tail = scan.slice(-120);
      });
      socket.on("close", () => {
        w.closed = true;
        finish("closed");
      });
      socket.on("error", (e) => {
        w.closed = true;
        finish(`error ${(e as Error).message}`);
      });
    });
  }

  close(): void {
    if (!this.closed) this.socket?.destroy();
    this.closed = true;
  }
}

interface PathResult {
  established: number;
  failures: Record<string, number>;
  openSeconds: number;
  delivered: number;
  missedWatches: number;
  missedEvents: number;
  closedDuring: number;
  p50: number;
  p99: number;
  max: number;
  kpass?: { fdBefore: number; fdWith: number; rssBefore: number; rssWith: number; fdAfter: number; rssAfter: number };
}

async function runPath(fixture: TestCluster, n: number, url: string, caPem: string, target: string, token: string, kpassPid: number | undefined, tag: string): Promise<PathResult> {
  const fdBefore = kpassPid ? fdCount(kpassPid) : 0;
  const rssBefore = kpassPid ? rssKiB(kpassPid) : 0;
  const watches: Watch[] = [];
  const failures: Record<string, number> = {};
  const started = performance.now();
  const deadline = Date.now() + OPEN_PHASE_MS;
  let next = 0;
  const worker = async () => {
    while (next < n && Date.now() < deadline) {
      next++;
      const r = await Watch.open(url, caPem, target, token);
      if (typeof r === "string") failures[r] = (failures[r] ?? 0) + 1;
      else watches.push(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, n) }, worker));
  const openSeconds = (performance.now() - started) / 1000;
  // All established at the fixture (kpass relays the head once the cluster answered).
  await until(() => fixture.activeStreams() >= watches.length, 20_000);
  await Bun.sleep(500);
  const fdWith = kpassPid ? fdCount(kpassPid) : 0;
  const rssWith = kpassPid ? rssKiB(kpassPid) : 0;

  const written = new Map<string, number>();
  for (let i = 0; i < K; i++) {
    if (i > 0) await Bun.sleep(EVENT_GAP_MS);
    const name = `wev-${tag}-${i}`;
    written.set(name, performance.now());
    fixture.store.create(CONFIGMAPS, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "bench" }, data: { i: String(i) } });
  }
  const live = () => watches.filter((w) => !w.closed);
  await until(() => watches.every((w) => w.closed || w.seen.size >= K), DELIVERY_WAIT_MS);

  const latencies: number[] = [];
  let delivered = 0;
  let missedWatches = 0;
  let missedEvents = 0;
  for (const w of watches) {
    let got = 0;
    for (const [name, at] of written) {
      const seenAt = w.seen.get(name);
      if (seenAt !== undefined) {
        got++;
        latencies.push(seenAt - at);
      }
    }
    delivered += got;
    if (got < K) {
      missedWatches++;
      missedEvents += K - got;
    }
  }
  latencies.sort((a, b) => a - b);
  const closedDuring = watches.length - live().length;
  for (const w of watches) w.close();
  await until(() => fixture.activeStreams() === 0, 30_000);
  let fdAfter = 0;
  let rssAfter = 0;
  if (kpassPid) {
    await until(() => fdCount(kpassPid) <= fdBefore + 10, 20_000);
    fdAfter = fdCount(kpassPid);
    rssAfter = rssKiB(kpassPid);
  }
  return {
    established: watches.length,
    failures,
    openSeconds,
    delivered,
    missedWatches,
    missedEvents,
    closedDuring,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
    max: latencies.at(-1) ?? NaN,
    kpass: kpassPid ? { fdBefore, fdWith, rssBefore, rssWith, fdAfter, rssAfter } : undefined,
  };
}

const TOKEN = `bench-watches-${crypto.randomUUID()}`;
const fixture = await startTestCluster({ credential: { type: "token", token: TOKEN }, recordRequests: false });
if (!fixture.store.get(NAMESPACES, undefined, "bench")) fixture.store.create(NAMESPACES, { apiVersion: "v1", kind: "Namespace", metadata: { name: "bench" } });
let kpass: KpassProcess | undefined;
const rows: string[] = [];
const notes: string[] = [];
try {
  kpass = await startKpass({ args: ["--max-streams-per-pass", "0", "--probe-interval", "1h"] });
  const reg = await fetch(`${kpass.url}${CLUSTERS}`, {
    method: "POST",
    headers: { authorization: `Bearer ${kpass.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify(clusterManifest("b", fixture, { token: TOKEN })),
    tls: { ca: kpass.caPem },
    signal: AbortSignal.timeout(10_000),
  });
  if (reg.status !== 201) throw new Error(`registering cluster failed: ${reg.status} ${await reg.text()}`);
  // Warm up the proxy path.
  const warm = await fetch(`${kpass.url}${CLUSTERS}/b/proxy/api/v1/namespaces`, { headers: { authorization: `Bearer ${kpass.adminToken}` }, tls: { ca: kpass.caPem }, signal: AbortSignal.timeout(10_000) });
  await warm.text();
  await Bun.sleep(300);

  const limit = softNofile();
  const cap = Math.floor((limit - fdCount(process.pid) - FD_MARGIN) / 2);
  notes.push(`bench process: RLIMIT_NOFILE soft ${limit}, ${fdCount(process.pid)} fds idle → N capped at ${cap} (2 fds per watch here: client + fixture server end); kpass inherits the same limit`);

  for (const requested of counts) {
    const n = Math.min(requested, cap);
    const rv = String(fixture.store.currentResourceVersion());
    const path = `/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion=${rv}`;
    console.error(`[watches] N=${n}${n < requested ? ` (capped from ${requested})` : ""}: through kpass…`);
    const viaKpass = await runPath(fixture, n, kpass.url, kpass.caPem, `${CLUSTERS}/b/proxy${path}`, kpass.adminToken, kpass.pid, `k${n}`);
    console.error(`[watches] N=${n}: direct…`);
    const rv2 = String(fixture.store.currentResourceVersion());
    const direct = await runPath(fixture, n, fixture.url, fixture.caPem, `/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion=${rv2}`, TOKEN, undefined, `d${n}`);
    const k = viaKpass.kpass!;
    const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "–");
    const d = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? "+" : ""}${x.toFixed(1)}` : "–");
    const fails = (r: PathResult) => Object.entries(r.failures).map(([w, c]) => `${c}× ${w}`).join(", ") || "0";
    rows.push(
      `| ${n}${n < requested ? ` (of ${requested})` : ""} | ${viaKpass.established} / ${direct.established} | ${f(viaKpass.openSeconds)} / ${f(direct.openSeconds)} | ` +
        `${viaKpass.delivered}/${viaKpass.established * K} (${viaKpass.missedEvents} missed, ${viaKpass.missedWatches} watches) / ${direct.delivered}/${direct.established * K} (${direct.missedEvents} missed) | ` +
        `${f(viaKpass.p50)} / ${f(direct.p50)} (${d(viaKpass.p50 - direct.p50)}) | ${f(viaKpass.p99)} / ${f(direct.p99)} (${d(viaKpass.p99 - direct.p99)}) | ${f(viaKpass.max)} / ${f(direct.max)} | ` +
        `${(k.rssBefore / 1024).toFixed(0)} → ${(k.rssWith / 1024).toFixed(0)} (${((k.rssWith - k.rssBefore) / Math.max(1, viaKpass.established)).toFixed(1)} KiB/watch) | ` +
        `${k.fdBefore} → ${k.fdWith} (${((k.fdWith - k.fdBefore) / Math.max(1, viaKpass.established)).toFixed(2)}/watch) | ${k.fdAfter} / ${(k.rssAfter / 1024).toFixed(0)} | ${fails(viaKpass)} / ${fails(direct)} |`,
    );
    if (viaKpass.closedDuring || direct.closedDuring) notes.push(`N=${n}: watches closed before the end: kpass ${viaKpass.closedDuring}, direct ${direct.closedDuring}`);
    console.error(`[watches] ${rows.at(-1)}`);
  }
} finally {
  if (kpass) {
    await kpass.stop();
    removeDataDir(kpass.dataDir);
  }
  await fixture.stop();
}

console.log(`Watches at scale — ${new Date().toISOString()}, ${cpus().length} cores, Bun ${Bun.version}; K=${K} events ${EVENT_GAP_MS} ms apart; watches opened ${OPEN_CONCURRENCY} at a time, one TLS connection each; kpass --max-streams-per-pass 0 --probe-interval 1h\n`);
console.log("| N | established kpass / direct | open time s kpass / direct | events delivered kpass / direct | latency p50 ms kpass / direct (added) | p99 ms (added) | max ms | kpass VmRSS MiB before → with | kpass fds before → with | kpass fds / RSS MiB after close | open failures kpass / direct |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
console.log("");
for (const n of notes) console.log(`- ${n}`);
process.exit(0);
