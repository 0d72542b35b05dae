#!/usr/bin/env bun
/**
 * kpass benchmark: one run, one table, ratios against a direct connection and nginx measured in
 * the same run. See bench/README.md.
 *
 *   bun bench/run.ts            full run (~3–4 minutes)
 *   bun bench/run.ts --quick    CI smoke (~1 s per measurement, small LIST, few passes)
 *
 * Everything listens on 127.0.0.1 only; every load loop is bounded in time (and wrk is killed if
 * it overstays); only processes started here are stopped, by pid.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { startKpass, type KpassProcess } from "../test/harness/kpass.ts";

// ───────────────────────────── options ─────────────────────────────

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    duration: { type: "string" },
    rounds: { type: "string" },
    "list-mib": { type: "string" },
    passes: { type: "string" },
    clusters: { type: "string" },
    "nginx-workers": { type: "string" },
    "slow-us": { type: "string" },
    generator: { type: "string" },
    "no-install": { type: "boolean", default: false },
    "no-fixture": { type: "boolean", default: false },
    "no-breakdown": { type: "boolean", default: false },
    "metrics-only": { type: "boolean", default: false },
    ab: { type: "string" },
    "kpass-root": { type: "string" },
    out: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (flags.help) {
  console.log(`usage: bun bench/run.ts [--quick] [--duration S] [--rounds N] [--list-mib N] [--passes N] [--clusters N]
                        [--nginx-workers N|auto] [--slow-us N] [--generator wrk|bun] [--no-install] [--no-fixture] [--no-breakdown] [--metrics-only] [--out DIR]
  --duration S   seconds per measured slice (default 2; quick 1)
  --rounds N     interleaved rounds per comparison (default 5; quick 1): each target is measured
                 N × S seconds in total, alternating with the targets it is compared with
  --slow-us N    CPU µs the slow upstream spends per pod GET (default 150; 0 skips the slow-upstream runs)
  --metrics-only only the metrics comparison: small GET with --metrics on vs off, 1 and 32 connections
  --kpass-root DIR  run every kpass of the full run from another checkout (a "before" of the same tables)
  --ab DIR       only A/B of two builds: small GET through kpass from DIR (A, e.g. a worktree of the
                 base commit) and from this checkout (B), audit file + metrics on, plus an A/A control
env: BENCH_DURATION, BENCH_ROUNDS, BENCH_LIST_MIB, BENCH_PASSES, BENCH_CLUSTERS, BENCH_NGINX_WORKERS, BENCH_GENERATOR`);
  process.exit(0);
}

const QUICK = flags.quick || process.env.BENCH_QUICK === "1";
const opt = (flag: string | undefined, env: string, full: string, quick: string) => flag ?? process.env[env] ?? (QUICK ? quick : full);
// wrk takes whole seconds.
const DURATION_S = Math.max(1, Math.round(Number(opt(flags.duration, "BENCH_DURATION", "2", "1"))));
const ROUNDS = Math.max(1, Math.round(Number(opt(flags.rounds, "BENCH_ROUNDS", "5", "1"))));
const LIST_MIB = Number(opt(flags["list-mib"], "BENCH_LIST_MIB", "512", "64"));
const PASSES = Number(opt(flags.passes, "BENCH_PASSES", "10000", "200"));
const CLUSTERS = Number(opt(flags.clusters, "BENCH_CLUSTERS", "1000", "20"));
const NGINX_WORKERS = opt(flags["nginx-workers"], "BENCH_NGINX_WORKERS", "1", "1");
const SLOW_US = Number(opt(flags["slow-us"], "BENCH_SLOW_US", "150", "150"));
const WARMUP_S = 1;
const OUT_DIR = flags.out ?? join(import.meta.dir, "out");
const ROOT = join(import.meta.dir, "..");
const BUN = process.execPath;
const UPSTREAM_TOKEN = `bench-upstream-${crypto.randomUUID()}`;
const POD_PATH = "/api/v1/namespaces/default/pods/web-0";
const LIST_PATH = "/api/v1/pods";
const GROUP = "/apis/cluster.kpass.dev/v1beta1";

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

// ───────────────────────────── process bookkeeping ─────────────────────────────

const work = mkdtempSync(join(tmpdir(), "kpass-bench-"));
const started: { name: string; stop: () => Promise<void> | void }[] = [];

async function cleanup(): Promise<void> {
  for (const p of started.reverse()) {
    const t = performance.now();
    try {
      await Promise.race([p.stop(), Bun.sleep(5000)]);
      const ms = performance.now() - t;
      if (ms > 1000) log(`stopping ${p.name} took ${(ms / 1000).toFixed(1)} s`);
    } catch {
      // already gone
    }
  }
  started.length = 0;
  rmSync(work, { recursive: true, force: true });
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping what the benchmark started`);
    void cleanup().then(() => process.exit(130));
  });
}

function have(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** Installs wrk and nginx-light from Debian when missing and apt-get is usable (root). */
function ensureTools(): { wrk: boolean; nginx: boolean } {
  const missing = [have("wrk") ? undefined : "wrk", have("nginx") ? undefined : "nginx-light"].filter(Boolean) as string[];
  if (missing.length > 0 && !flags["no-install"] && have("apt-get") && process.getuid?.() === 0) {
    log(`installing ${missing.join(" ")} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    let r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: "ignore", env, timeout: 300_000 });
    if (r.status !== 0) {
      spawnSync("apt-get", ["update"], { stdio: "ignore", env, timeout: 300_000 });
      r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: "ignore", env, timeout: 300_000 });
    }
  }
  const tools = { wrk: have("wrk"), nginx: have("nginx") };
  if (!tools.wrk || !tools.nginx) {
    log(`missing: ${[!tools.wrk && "wrk", !tools.nginx && "nginx"].filter(Boolean).join(", ")} — install with: apt-get install -y wrk nginx-light`);
    if (!tools.wrk) log("falling back to the Bun load generator (bench/loadgen.ts); numbers are lower and noisier than with wrk");
    if (!tools.nginx) log("the nginx comparison is skipped");
  }
  return tools;
}

async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** Reads a process's stdout lines until `match` returns a value (bounded in time). */
async function readUntil<T>(proc: Subprocess<"ignore", "pipe", "pipe">, match: (text: string) => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = match(text);
    if (found !== undefined) {
      reader.releaseLock();
      return found;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`${what} did not start in time: ${text}`);
    const next = await Promise.race([reader.read(), Bun.sleep(remaining).then(() => ({ done: false, value: undefined }))]);
    if (next.done) throw new Error(`${what} exited: ${text}${await new Response(proc.stderr).text()}`);
    if (next.value) text += decoder.decode(next.value);
  }
}

// ───────────────────────────── /proc sampling ─────────────────────────────

const CLK_TCK = 100;

function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine (all cores, softirq included) from /proc/stat. */
function machineBusySeconds(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - f[3]! - f[4]!) / CLK_TCK;
  } catch {
    return NaN;
  }
}

function loadAverage(): number {
  try {
    return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return NaN;
  }
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** utime+stime of a process (all its threads) and, optionally, its direct children, in seconds. */
function cpuSeconds(pid: number, children = false): number {
  const one = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    } catch {
      return 0;
    }
  };
  return one(pid) + (children ? childPids(pid).reduce((sum, c) => sum + one(c), 0) : 0);
}

// ───────────────────────────── load generation ─────────────────────────────

interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  non2xx: number;
  seconds: number;
  /** CPU used during the run, in cores (1.0 = one core busy the whole time). */
  cpu: Record<string, number>;
}

interface Target {
  name: string;
  url: string;
  token: string;
  caFile: string;
  /** Processes whose CPU is reported during a run (the generator is always added). */
  pids: Record<string, { pid: number; children?: boolean }>;
}

let generator: "wrk" | "bun" = "wrk";

function parseDurationMs(text: string): number {
  const m = /([\d.]+)(us|ms|s|m)/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as "ms"];
}

function parseWrk(output: string, seconds: number): Omit<LoadResult, "cpu"> {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? NaN);
  const p50 = /^\s*50%\s+(\S+)/m.exec(output)?.[1];
  const p99 = /^\s*99%\s+(\S+)/m.exec(output)?.[1];
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const errors = socket ? socket.slice(1).reduce((s, n) => s + Number(n), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${output}`);
  // wrk's req/s is over its real run time, which is a little longer than asked for.
  const measured = requests > 0 && rps > 0 ? requests / rps : seconds;
  return { rps, requests, p50Ms: p50 ? parseDurationMs(p50) : NaN, p99Ms: p99 ? parseDurationMs(p99) : NaN, errors, non2xx, seconds: measured };
}

/** One bounded load run against `target`: `connections` keep-alive connections for `seconds`. */
async function load(target: Target, connections: number, seconds: number): Promise<LoadResult> {
  const before = Object.fromEntries(Object.entries(target.pids).map(([k, p]) => [k, cpuSeconds(p.pid, p.children)]));
  const busyBefore = machineBusySeconds();
  const t0 = performance.now();
  const argv =
    generator === "wrk"
      ? ["wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "5s", "-H", `Authorization: Bearer ${target.token}`, target.url]
      : [BUN, join(import.meta.dir, "loadgen.ts"), "--url", target.url, "--token", target.token, "--ca", target.caFile, "--connections", String(connections), "--duration", String(seconds)];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const killer = setTimeout(() => proc.kill(), (seconds + 20) * 1000);
  const output = await new Response(proc.stdout).text();
  await proc.exited;
  clearTimeout(killer);
  const wall = (performance.now() - t0) / 1000;
  const cpu: Record<string, number> = {};
  for (const [k, p] of Object.entries(target.pids)) cpu[k] = (cpuSeconds(p.pid, p.children) - before[k]!) / wall;
  const usage = proc.resourceUsage();
  if (usage) cpu.generator = (Number(usage.cpuTime.user) + Number(usage.cpuTime.system)) / 1e6 / wall;
  // Everything else the machine did meanwhile: kernel softirq (loopback TCP) and other processes.
  const busy = (machineBusySeconds() - busyBefore) / wall;
  if (Number.isFinite(busy)) cpu.rest = Math.max(0, busy - Object.values(cpu).reduce((a, b) => a + b, 0));
  if (proc.exitCode !== 0) throw new Error(`load generator failed (${proc.exitCode}): ${output}${await new Response(proc.stderr).text()}`);
  const parsed = generator === "wrk" ? parseWrk(output, seconds) : (JSON.parse(output.trim().split("\n").pop()!) as Omit<LoadResult, "cpu">);
  return { ...parsed, cpu };
}

interface Aggregate {
  target: string;
  connections: number;
  /** Mean over the rounds (total requests / total measured seconds). */
  rps: number;
  minRps: number;
  maxRps: number;
  /** Medians over the rounds of each round's p50 and p99. */
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** Mean CPU per process over the rounds, in cores. */
  cpu: Record<string, number>;
  rounds: LoadResult[];
}

const median = (xs: number[]) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function aggregate(target: string, connections: number, rounds: LoadResult[]): Aggregate {
  const requests = rounds.reduce((s, r) => s + r.requests, 0);
  const seconds = rounds.reduce((s, r) => s + r.seconds, 0);
  const cpu: Record<string, number> = {};
  for (const r of rounds) for (const [k, v] of Object.entries(r.cpu)) cpu[k] = (cpu[k] ?? 0) + v / rounds.length;
  return {
    target,
    connections,
    rps: requests / seconds,
    minRps: Math.min(...rounds.map((r) => r.rps)),
    maxRps: Math.max(...rounds.map((r) => r.rps)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    errors: rounds.reduce((s, r) => s + r.errors + r.non2xx, 0),
    cpu,
    rounds,
  };
}

/** CPU time the server under test (the proxy, or the upstream for direct) spent per request. */
function cpuPerRequestUs(a: Aggregate): number {
  const key = ["kpass", "nginx", "bare", "fixture", "upstream"].find((k) => a.cpu[k] !== undefined);
  return key ? (a.cpu[key]! * 1e6) / a.rps : NaN;
}

const cpuText = (cpu: Record<string, number>) => Object.entries(cpu).map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`).join(", ");

/**
 * Measures `targets` against each other: a warm-up each (unrecorded), then ROUNDS rounds of one
 * DURATION_S slice per target, the order rotating every round. Interleaving short slices puts the
 * targets under the same (noisy, shared, 2-core) conditions, so per-round ratios are meaningful.
 */
async function compare(targets: Target[], connections: number): Promise<Aggregate[]> {
  for (const t of targets) await load(t, connections, WARMUP_S);
  const results = targets.map(() => [] as LoadResult[]);
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (k + round) % targets.length;
      const t = targets[i]!;
      const r = await load(t, connections, DURATION_S);
      results[i]!.push(r);
      log(`  ${t.name.padEnd(28)} c=${String(connections).padEnd(3)} round ${round + 1}/${ROUNDS} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  cpu: ${cpuText(r.cpu)}`);
      if (r.errors + r.non2xx > 0) log(`  WARNING: ${t.name} had ${r.errors} socket errors and ${r.non2xx} non-2xx responses`);
    }
  }
  return targets.map((t, i) => aggregate(t.name, connections, results[i]!));
}

/** Per-round ratios a/b (the rounds of a and b were measured back to back). */
function roundRatios(a: Aggregate | undefined, b: Aggregate | undefined): number[] {
  if (!a || !b) return [];
  return a.rounds.map((r, i) => r.rps / (b.rounds[i]?.rps ?? NaN)).filter(Number.isFinite);
}

/** Fetches once and checks the answer is the pod (so no benchmark measures an error page). */
async function checkTarget(target: Target, expected: string): Promise<void> {
  const response = await fetch(target.url, { headers: { authorization: `Bearer ${target.token}` }, tls: { ca: readFileSync(target.caFile, "utf8") } });
  const body = await response.text();
  if (response.status !== 200 || body !== expected) throw new Error(`${target.name}: GET answered ${response.status} ${body.slice(0, 300)}`);
}

// ───────────────────────────── the processes under test ─────────────────────────────

interface Upstream {
  url: string;
  caFile: string;
  caPem: string;
  pid: number;
  podBytes: number;
  listBytes: number;
}

async function startUpstream(listBytes: number, cpuUs = 0, name = "upstream", workers = 1): Promise<Upstream> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const proc = Bun.spawn([BUN, join(import.meta.dir, "upstream.ts"), "--token", UPSTREAM_TOKEN, "--dir", dir, "--list-bytes", String(listBytes), "--cpu-us", String(cpuUs), "--workers", String(workers)], { stdin: "ignore", stdout: "pipe", stderr: "pipe", cwd: ROOT });
  started.push({ name, stop: async () => void (proc.kill(), await proc.exited) });
  const info = await readUntil(proc, (t) => (t.includes("\n") ? (JSON.parse(t.split("\n")[0]!) as Omit<Upstream, "pid" | "caPem">) : undefined), 20_000, "upstream");
  return { ...info, caPem: readFileSync(info.caFile, "utf8"), pid: proc.pid };
}

/** A bare proxy of kpass's shape without its logic (bench/bare-proxy.ts), to see where time goes. */
async function startBare(mode: "serve" | "edge", upstream: Upstream): Promise<{ url: string; caFile: string; pid: number }> {
  const dir = join(work, `bare-${mode}`);
  mkdirSync(dir, { recursive: true });
  const proc = Bun.spawn([BUN, join(import.meta.dir, "bare-proxy.ts"), "--mode", mode, "--upstream", upstream.url, "--ca", upstream.caFile, "--token", UPSTREAM_TOKEN, "--dir", dir], { stdin: "ignore", stdout: "pipe", stderr: "pipe", cwd: ROOT });
  started.push({ name: `bare-${mode}`, stop: async () => void (proc.kill(), await proc.exited) });
  const info = await readUntil(proc, (t) => (t.includes("\n") ? (JSON.parse(t.split("\n")[0]!) as { url: string; caFile: string }) : undefined), 20_000, `bare proxy (${mode})`);
  return { ...info, pid: proc.pid };
}

/** The node:https test-cluster fixture, only to show whether it or the Bun upstream is faster. */
async function startFixture(): Promise<{ url: string; caFile: string; pid: number; token: string }> {
  const token = "bench-fixture-token";
  const proc = Bun.spawn([BUN, join(ROOT, "test/fixture/cluster/main.ts"), "--token", token], { stdin: "ignore", stdout: "pipe", stderr: "pipe", cwd: ROOT });
  started.push({ name: "fixture", stop: async () => void (proc.kill(), await proc.exited) });
  const info = await readUntil(
    proc,
    (t) => {
      const url = /url=(\S+)/.exec(t)?.[1];
      const ca = /ca=(\S+)/.exec(t)?.[1];
      return url && ca && t.includes("token=") ? { url, caFile: ca } : undefined;
    },
    20_000,
    "test cluster fixture",
  );
  return { ...info, pid: proc.pid, token };
}

async function startNginx(upstream: Upstream, name = "nginx"): Promise<{ url: string; pid: number; caFile: string }> {
  const dir = join(work, name);
  mkdirSync(join(dir, "temp"), { recursive: true });
  const ca = await createCertificateAuthority("kpass-bench-nginx-ca");
  const serving = await issueServingCertificate(ca, { commonName: "nginx", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  writeFileSync(join(dir, "server.crt"), serving.certPem);
  writeFileSync(join(dir, "server.key"), serving.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, "ca.crt"), ca.certPem);
  const port = await freePort();
  const upstreamPort = new URL(upstream.url).port;
  const temp = (name: string) => `${name}_temp_path ${join(dir, "temp", name)};`;
  const conf = `
${process.getuid?.() === 0 ? "user root;" : ""}
worker_processes ${NGINX_WORKERS};
daemon off;
master_process on;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")} ${temp("uwsgi")} ${temp("scgi")}
  upstream kube {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${join(dir, "server.crt")};
    ssl_certificate_key ${join(dir, "server.key")};
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    location / {
      proxy_pass https://kube;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${UPSTREAM_TOKEN}";
      proxy_ssl_trusted_certificate ${upstream.caFile};
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_buffering off;
    }
  }
}
`;
  writeFileSync(join(dir, "nginx.conf"), conf);
  const proc = Bun.spawn(["nginx", "-p", dir, "-c", join(dir, "nginx.conf")], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  started.push({
    name,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited: ${await new Response(proc.stderr).text()} ${existsSync(join(dir, "error.log")) ? readFileSync(join(dir, "error.log"), "utf8") : ""}`);
    try {
      await fetch(`https://127.0.0.1:${port}/version`, { tls: { ca: ca.certPem } });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error("nginx did not start listening");
      await Bun.sleep(50);
    }
  }
  return { url: `https://127.0.0.1:${port}`, pid: proc.pid, caFile: join(dir, "ca.crt") };
}

interface Kpass {
  proc: KpassProcess;
  caFile: string;
  name: string;
}

async function startKpassFor(name: string, audit: "off" | "file", metrics: "on" | "off" = "on", root = flags["kpass-root"]): Promise<Kpass> {
  const dataDir = join(work, `kpass-${name}`);
  const proc = await startKpass({ dataDir, root, args: ["--probe-interval", "1h", "--upstream-timeout", "15s", "--audit", audit, "--metrics", metrics] });
  started.push({ name: `kpass-${name}`, stop: () => proc.stop() });
  const caFile = join(dataDir, "bench-ca.crt");
  writeFileSync(caFile, proc.caPem);
  return { proc, caFile, name };
}

function clusterBody(name: string, upstream: Upstream): Record<string, unknown> {
  return {
    apiVersion: "cluster.kpass.dev/v1beta1",
    kind: "Cluster",
    metadata: { name, labels: { bench: "true" } },
    spec: { access: { endpoint: upstream.url, caBundle: Buffer.from(upstream.caPem).toString("base64"), credential: { type: "ServiceAccountToken", serviceAccountToken: UPSTREAM_TOKEN } } },
  };
}

function passBody(name: string, cluster: string): Record<string, unknown> {
  return { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec: { user: `user-${name}`, roles: ["view"], clusters: { names: [cluster] } } };
}

async function expectCreated(response: Response, what: string): Promise<Record<string, any>> {
  const body = (await response.json()) as Record<string, any>;
  if (response.status !== 201 && response.status !== 200) throw new Error(`creating ${what}: ${response.status} ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

async function addCluster(kpass: Kpass, name: string, upstream: Upstream): Promise<void> {
  await expectCreated(await kpass.proc.api("POST", `${GROUP}/clusters`, clusterBody(name, upstream)), `cluster ${name}`);
}

async function addPass(kpass: Kpass, name: string, cluster: string): Promise<string> {
  const body = await expectCreated(await kpass.proc.api("POST", `${GROUP}/passes`, passBody(name, cluster)), `pass ${name}`);
  const token = body.status?.token;
  if (typeof token !== "string") throw new Error(`pass ${name}: no status.token in the create response`);
  return token;
}

/** Runs `count` jobs with at most `parallel` in flight. */
async function inParallel(count: number, parallel: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await job(next++);
    }),
  );
}

function kpassTarget(name: string, kpass: Kpass, cluster: string, token: string, upstream: Upstream): Target {
  return { name, url: `${kpass.proc.url}${GROUP}/clusters/${cluster}/proxy${POD_PATH}`, token, caFile: kpass.caFile, pids: { kpass: { pid: kpass.proc.pid }, upstream: { pid: upstream.pid } } };
}

// ───────────────────────────── streaming ─────────────────────────────

interface StreamResult {
  bytes: number;
  seconds: number;
  mbPerS: number;
  baselineRssMiB?: number;
  peakRssMiB?: number;
  rssGrowthMiB?: number;
}

/** Downloads a big LIST with curl (own process), sampling `rssPid`'s VmRSS every 50 ms. */
async function stream(url: string, token: string, caFile: string, rssPid?: number): Promise<StreamResult> {
  let baseline = 0;
  let peak = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  if (rssPid) {
    // Baseline: the steady RSS just before the stream (a few samples, the highest).
    for (let i = 0; i < 5; i++) {
      baseline = Math.max(baseline, rssKiB(rssPid));
      await Bun.sleep(50);
    }
    peak = baseline;
    timer = setInterval(() => {
      peak = Math.max(peak, rssKiB(rssPid));
    }, 50);
  }
  const useCurl = have("curl");
  const t0 = performance.now();
  let bytes = 0;
  if (useCurl) {
    const proc = Bun.spawn(["curl", "-sS", "--max-time", "180", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--cacert", caFile, "-H", `Authorization: Bearer ${token}`, url], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    const [code, size] = out.trim().split(" ");
    if (code !== "200") throw new Error(`stream ${url}: HTTP ${code} ${await new Response(proc.stderr).text()}`);
    bytes = Number(size);
  } else {
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, tls: { ca: readFileSync(caFile, "utf8") }, signal: AbortSignal.timeout(180_000) });
    if (response.status !== 200) throw new Error(`stream ${url}: HTTP ${response.status}`);
    for await (const chunk of response.body!) bytes += chunk.byteLength;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (timer) {
    await Bun.sleep(60);
    clearInterval(timer);
    peak = Math.max(peak, rssKiB(rssPid!));
  }
  const result: StreamResult = { bytes, seconds, mbPerS: bytes / 1e6 / seconds };
  if (rssPid) Object.assign(result, { baselineRssMiB: baseline / 1024, peakRssMiB: peak / 1024, rssGrowthMiB: (peak - baseline) / 1024 });
  return result;
}

let expectedListBytes = 0;

function describeStream(name: string, r: StreamResult): string {
  if (expectedListBytes && r.bytes !== expectedListBytes) throw new Error(`${name}: streamed ${r.bytes} bytes, the upstream sent ${expectedListBytes}`);
  const rss = r.rssGrowthMiB !== undefined ? `  RSS ${r.baselineRssMiB!.toFixed(1)} → peak ${r.peakRssMiB!.toFixed(1)} MiB (+${r.rssGrowthMiB.toFixed(1)} MiB)` : "";
  return `  ${name.padEnd(28)} ${(r.bytes / 2 ** 20).toFixed(0)} MiB in ${r.seconds.toFixed(2)} s = ${r.mbPerS.toFixed(0)} MB/s${rss}`;
}

// ───────────────────────────── main ─────────────────────────────

const fmt = (n: number | undefined, digits = 0) => (n === undefined || !Number.isFinite(n) ? "n/a" : n.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);

function machine() {
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const version = (cmd: string[]) => {
    const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8" });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] ?? "";
  };
  return {
    date: new Date().toISOString(),
    nproc: cpus().length,
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    bun: Bun.version,
    wrk: have("wrk") ? version(["wrk", "-v"]) : "missing",
    nginx: have("nginx") ? version(["nginx", "-v"]) : "missing",
    curl: have("curl") ? version(["curl", "--version"]) : "missing",
  };
}

async function stopStarted(name: string): Promise<void> {
  const entry = started.find((s) => s.name === name);
  if (!entry) return;
  started.splice(started.indexOf(entry), 1);
  await entry.stop();
}

/**
 * Small GET through three kpass processes, --metrics on, --metrics off, and --metrics off again
 * (both --audit off), measured alternately at 1 and 32 connections. The second "off" is the A/A
 * control: off ÷ off again shows how far two identical processes drift apart on this machine, the
 * resolution below which on ÷ off means nothing. Ends with a scrape of the "on" kpass, to show
 * that it counted what the load sent.
 */
async function metricsComparison(upstream: Upstream, podBody: string): Promise<{ rows: Aggregate[]; markdown: string; counted: number }> {
  const on = await startKpassFor("metrics-on", "off", "on");
  const off = await startKpassFor("metrics-off", "off", "off");
  const control = await startKpassFor("metrics-off-2", "off", "off");
  const targets: Target[] = [];
  for (const [k, name] of [[on, "kpass (metrics on)"], [off, "kpass (metrics off)"], [control, "kpass (metrics off, again)"]] as const) {
    await addCluster(k, "c1", upstream);
    const t = kpassTarget(name, k, "c1", await addPass(k, "bench", "c1"), upstream);
    await checkTarget(t, podBody);
    targets.push(t);
  }
  const rows: Aggregate[] = [];
  for (const connections of [1, 32]) rows.push(...(await compare(targets, connections)));
  const text = await (await on.proc.api("GET", "/metrics")).text();
  const counted = text
    .split("\n")
    .filter((l) => l.startsWith("kpass_proxy_requests_total{") && l.includes('verb="get"') && l.includes('code="200"'))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
  const lines = [
    "| GET one pod | conns | on req/s | off req/s | off again req/s | on ÷ off (of means) | per-round on ÷ off: median (range) | A/A: off ÷ off again (of means) | kpass CPU µs/req on / off / off again |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const connections of [1, 32]) {
    const [a, b, c] = targets.map((t) => rows.find((r) => r.target === t.name && r.connections === connections)!) as [Aggregate, Aggregate, Aggregate];
    const per = roundRatios(a, b);
    lines.push(`| | ${connections} | ${fmt(a.rps)} | ${fmt(b.rps)} | ${fmt(c.rps)} | ${fmt(ratio(a.rps, b.rps), 3)} | ${fmt(median(per), 3)} (${fmt(Math.min(...per), 3)}–${fmt(Math.max(...per), 3)}) | ${fmt(ratio(b.rps, c.rps), 3)} | ${fmt(cpuPerRequestUs(a), 1)} / ${fmt(cpuPerRequestUs(b), 1)} / ${fmt(cpuPerRequestUs(c), 1)} |`);
  }
  for (const name of ["kpass-metrics-off-2", "kpass-metrics-off", "kpass-metrics-on"]) await stopStarted(name);
  return { rows, markdown: lines.join("\n"), counted };
}

async function metricsOnly(): Promise<void> {
  const tools = ensureTools();
  generator = (flags.generator ?? process.env.BENCH_GENERATOR ?? (tools.wrk ? "wrk" : "bun")) as "wrk" | "bun";
  const meta = { ...machine(), mode: "metrics", sliceS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, generator };
  log(`machine: ${meta.nproc} cores (${meta.cpuModel}), ${meta.memoryGiB} GiB, Bun ${meta.bun}, generator ${generator}, metrics comparison (${ROUNDS} rounds × ${DURATION_S} s per target)`);
  log(`  load average ${loadAverage()} before the run`);
  const upstream = await startUpstream(2 ** 20);
  const podBody = await (await fetch(`${upstream.url}${POD_PATH}`, { headers: { authorization: `Bearer ${UPSTREAM_TOKEN}` }, tls: { ca: upstream.caPem } })).text();
  const result = await metricsComparison(upstream, podBody);
  const rest = result.rows.flatMap((a) => a.rounds).map((r) => r.cpu.rest ?? 0);
  const markdown = [
    `Run ${meta.date}: ${ROUNDS} interleaved round(s) × ${DURATION_S} s per target and concurrency (+${WARMUP_S} s warm-up), generator ${generator}, ${meta.nproc} cores (${meta.cpuModel}), Bun ${meta.bun}; rest of the machine ${(rest.reduce((a, b) => a + b, 0) / rest.length).toFixed(2)} cores on average.`,
    "",
    result.markdown,
    "",
    `The "on" kpass counted ${result.counted} GET 200 requests in kpass_proxy_requests_total.`,
  ].join("\n");
  console.log("\n" + markdown + "\n");
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, "latest-metrics.md"), markdown + "\n");
  writeFileSync(join(OUT_DIR, "latest-metrics.json"), JSON.stringify({ meta, rows: result.rows, counted: result.counted }, null, 2));
}

/**
 * Two builds side by side: A from another checkout, B from this one, and B again as the A/A
 * control, all with the audit log and metrics on (the path the issue measures), interleaved.
 */
async function abOnly(dir: string): Promise<void> {
  const tools = ensureTools();
  generator = (flags.generator ?? process.env.BENCH_GENERATOR ?? (tools.wrk ? "wrk" : "bun")) as "wrk" | "bun";
  const meta = { ...machine(), mode: "ab", sliceS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, generator, a: dir };
  log(`machine: ${meta.nproc} cores (${meta.cpuModel}), Bun ${meta.bun}, A = ${dir}, B = ${ROOT}, load average ${loadAverage()}`);
  const upstream = await startUpstream(2 ** 20);
  const podBody = await (await fetch(`${upstream.url}${POD_PATH}`, { headers: { authorization: `Bearer ${UPSTREAM_TOKEN}` }, tls: { ca: upstream.caPem } })).text();
  const a = await startKpassFor("ab-a", "file", "on", dir);
  const b = await startKpassFor("ab-b", "file", "on");
  const b2 = await startKpassFor("ab-b2", "file", "on");
  const targets: Target[] = [];
  for (const [k, name] of [[a, "A (base)"], [b, "B (this)"], [b2, "B again (A/A)"]] as const) {
    await addCluster(k, "c1", upstream);
    const t = kpassTarget(name, k, "c1", await addPass(k, "bench", "c1"), upstream);
    await checkTarget(t, podBody);
    targets.push(t);
  }
  const lines = ["| conns | A req/s | B req/s | B again req/s | B÷A per-round median (range) | CPU µs/req A / B / B again (medians of rounds) |", "| ---: | ---: | ---: | ---: | ---: | ---: |"];
  for (const connections of [1, 32]) {
    const [ra, rb, rc] = (await compare(targets, connections)) as [Aggregate, Aggregate, Aggregate];
    const per = roundRatios(rb, ra);
    const us = (x: Aggregate) => median(x.rounds.map((r) => ((r.cpu.kpass ?? NaN) * 1e6) / r.rps));
    const mrps = (x: Aggregate) => median(x.rounds.map((r) => r.rps));
    lines.push(`| ${connections} | ${fmt(mrps(ra))} | ${fmt(mrps(rb))} | ${fmt(mrps(rc))} | ${fmt(median(per), 3)} (${fmt(Math.min(...per), 3)}–${fmt(Math.max(...per), 3)}) | ${fmt(us(ra), 1)} / ${fmt(us(rb), 1)} / ${fmt(us(rc), 1)} |`);
  }
  console.log(`\nRun ${meta.date}: ${ROUNDS} rounds × ${DURATION_S} s, ${meta.nproc} cores (${meta.cpuModel}), Bun ${meta.bun}, load average ${loadAverage()} after\n\n${lines.join("\n")}\n`);
  for (const name of ["kpass-ab-b2", "kpass-ab-b", "kpass-ab-a"]) await stopStarted(name);
}

async function main(): Promise<void> {
  if (flags.ab) return abOnly(flags.ab);
  if (flags["metrics-only"]) return metricsOnly();
  const t0 = performance.now();
  const tools = ensureTools();
  generator = (flags.generator ?? process.env.BENCH_GENERATOR ?? (tools.wrk ? "wrk" : "bun")) as "wrk" | "bun";
  const meta = { ...machine(), mode: QUICK ? "quick" : "full", sliceS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, listMiB: LIST_MIB, passes: PASSES, clusters: CLUSTERS, nginxWorkers: NGINX_WORKERS, generator };
  log(`machine: ${meta.nproc} cores (${meta.cpuModel}), ${meta.memoryGiB} GiB, Bun ${meta.bun}, generator ${generator}, ${meta.mode} mode (${ROUNDS} rounds × ${DURATION_S} s per target)`);

  const upstream = await startUpstream(LIST_MIB * 2 ** 20);
  log(`upstream (Bun.serve TLS) ${upstream.url}, pod ${upstream.podBytes} bytes, list ${upstream.listBytes} bytes`);
  expectedListBytes = upstream.listBytes;
  const podBody = await (await fetch(`${upstream.url}${POD_PATH}`, { headers: { authorization: `Bearer ${UPSTREAM_TOKEN}` }, tls: { ca: upstream.caPem } })).text();

  const direct: Target = { name: "direct", url: `${upstream.url}${POD_PATH}`, token: UPSTREAM_TOKEN, caFile: upstream.caFile, pids: { upstream: { pid: upstream.pid } } };
  let nginxTarget: Target | undefined;
  if (tools.nginx) {
    const nginx = await startNginx(upstream);
    nginxTarget = { name: "nginx", url: `${nginx.url}${POD_PATH}`, token: UPSTREAM_TOKEN, caFile: nginx.caFile, pids: { nginx: { pid: nginx.pid, children: true }, upstream: { pid: upstream.pid } } };
  }
  const kpassOff = await startKpassFor("audit-off", "off");
  await addCluster(kpassOff, "c1", upstream);
  const benchToken = await addPass(kpassOff, "bench", "c1");
  const kpassSmallOff = kpassTarget("kpass (audit off)", kpassOff, "c1", benchToken, upstream);
  // The small GETs go through kpass as the issue measures it: audit log and metrics on.
  const kpassAudit = await startKpassFor("audit-file", "file");
  await addCluster(kpassAudit, "c1", upstream);
  const auditToken = await addPass(kpassAudit, "bench", "c1");
  const kpassSmall = kpassTarget("kpass", kpassAudit, "c1", auditToken, upstream);
  const bareTargets: Target[] = [];
  if (!flags["no-breakdown"]) {
    const serve = await startBare("serve", upstream);
    bareTargets.push({ name: "bare Bun.serve+fetch", url: `${serve.url}${POD_PATH}`, token: "unused", caFile: serve.caFile, pids: { bare: { pid: serve.pid }, upstream: { pid: upstream.pid } } });
    const edge = await startBare("edge", upstream);
    bareTargets.push({ name: "bare edge+Bun.serve+fetch", url: `${edge.url}${POD_PATH}`, token: "unused", caFile: edge.caFile, pids: { bare: { pid: edge.pid }, upstream: { pid: upstream.pid } } });
  }
  for (const t of [direct, nginxTarget, kpassSmall, kpassSmallOff, ...bareTargets]) if (t) await checkTarget(t, podBody);

  // 1. Small GET.
  log(`1. small GET (${upstream.podBytes}-byte pod): ${ROUNDS} interleaved rounds × ${DURATION_S} s per target after ${WARMUP_S} s warm-up`);
  const smallGet: Aggregate[] = [];
  for (const connections of [1, 32]) {
    log(`  load average ${loadAverage()} (2 cores; anything above ~0.5 before a run means other work on the machine)`);
    smallGet.push(...(await compare([direct, nginxTarget, kpassSmall, ...bareTargets].filter((t): t is Target => t !== undefined), connections)));
  }
  let fixtureRows: Aggregate[] = [];
  if (!QUICK && !flags["no-fixture"]) {
    // Reference only: is the node:https test fixture faster or slower than the Bun upstream?
    const fixture = await startFixture();
    const fixtureTarget: Target = { name: "direct (node:https fixture)", url: `${fixture.url}${POD_PATH}`, token: fixture.token, caFile: fixture.caFile, pids: { fixture: { pid: fixture.pid } } };
    const saved = ROUNDS;
    for (const connections of [1, 32]) {
      await load(fixtureTarget, connections, WARMUP_S);
      const r = await load(fixtureTarget, connections, Math.min(saved * DURATION_S, 5));
      log(`  ${fixtureTarget.name.padEnd(28)} c=${String(connections).padEnd(3)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  cpu: ${cpuText(r.cpu)}`);
      fixtureRows.push(aggregate(fixtureTarget.name, connections, [r]));
    }
    await stopStarted("fixture");
  }
  const row = (target: string, c: number) => smallGet.find((r) => r.target === target && r.connections === c);

  // 1b. The same GET against an upstream that spends SLOW_US of CPU per request, as a real
  // kube-apiserver does: what the proxy costs when the cluster, not the proxy, does most work.
  const slowGet: Aggregate[] = [];
  if (SLOW_US > 0) {
    log(`1b. small GET against a slow upstream (${SLOW_US} µs CPU per request)`);
    // One worker per core, as kube-apiserver uses every core: the proxy's CPU is the cluster's loss.
    const slowWorkers = cpus().length;
    const slow = await startUpstream(1024, SLOW_US, "upstream-slow", slowWorkers);
    const up = { upstream: { pid: slow.pid, children: true } };
    const slowDirect: Target = { name: "direct", url: `${slow.url}${POD_PATH}`, token: UPSTREAM_TOKEN, caFile: slow.caFile, pids: up };
    const slowTargets: Target[] = [slowDirect];
    if (tools.nginx) {
      const nginx = await startNginx(slow, "nginx-slow");
      slowTargets.push({ name: "nginx", url: `${nginx.url}${POD_PATH}`, token: UPSTREAM_TOKEN, caFile: nginx.caFile, pids: { nginx: { pid: nginx.pid, children: true }, ...up } });
    }
    await addCluster(kpassAudit, "slow", slow);
    const slowToken = await addPass(kpassAudit, "bench-slow", "slow");
    slowTargets.push({ ...kpassTarget("kpass", kpassAudit, "slow", slowToken, slow), pids: { kpass: { pid: kpassAudit.proc.pid }, ...up } });
    for (const t of slowTargets) await checkTarget(t, podBody);
    for (const connections of [1, 32]) slowGet.push(...(await compare(slowTargets, connections)));
    await stopStarted("nginx-slow");
    await stopStarted("upstream-slow");
  }
  const slowRow = (target: string, c: number) => slowGet.find((r) => r.target === target && r.connections === c);

  // 2. Streaming a big LIST.
  log(`2. streaming a ${LIST_MIB} MiB LIST`);
  const kpassListUrl = `${kpassOff.proc.url}${GROUP}/clusters/c1/proxy${LIST_PATH}`;
  const streamDirect = await stream(`${upstream.url}${LIST_PATH}`, UPSTREAM_TOKEN, upstream.caFile);
  log(describeStream("direct", streamDirect));
  const streamKpass = await stream(kpassListUrl, benchToken, kpassOff.caFile, kpassOff.proc.pid);
  log(describeStream("kpass (audit off)", streamKpass));
  const streamKpass2 = await stream(kpassListUrl, benchToken, kpassOff.caFile, kpassOff.proc.pid);
  log(describeStream("kpass (audit off), again", streamKpass2));
  const bareStreams: [string, StreamResult][] = [];
  if (nginxTarget) {
    // The reference proxy on the same stream (RSS not sampled: the worker is a child of the pid we hold).
    const r = await stream(nginxTarget.url.replace(POD_PATH, LIST_PATH), nginxTarget.token, nginxTarget.caFile);
    log(describeStream("nginx", r));
    bareStreams.push(["nginx", r]);
  }
  for (const t of bareTargets) {
    const r = await stream(t.url.replace(POD_PATH, LIST_PATH), t.token, t.caFile, t.pids.bare!.pid);
    log(describeStream(t.name, r));
    bareStreams.push([t.name, r]);
  }

  // 3a. Audit on vs off: two kpass processes, measured alternately.
  log(`3a. audit log: --audit off vs --audit file, 32 connections`);
  const auditTarget = { ...kpassSmall, name: "kpass (audit file)" };
  const [auditOff, auditFile] = await compare([kpassSmallOff, auditTarget], 32);
  const streamAudit = await stream(`${kpassAudit.proc.url}${GROUP}/clusters/c1/proxy${LIST_PATH}`, auditToken, kpassAudit.caFile, kpassAudit.proc.pid);
  log(describeStream("kpass (audit file)", streamAudit));
  const auditLogPath = join(work, "kpass-audit-file", "audit.log");
  const auditLogBytes = existsSync(auditLogPath) ? readFileSync(auditLogPath).byteLength : 0;
  await stopStarted("kpass-audit-file");

  // 3b. Pass scale: PASSES passes and CLUSTERS clusters in a second kpass, measured alternately
  // with the 1-pass kpass.
  log(`3b. scale: creating ${CLUSTERS} clusters and ${PASSES} passes through the API (32 requests in flight)`);
  const kpassBig = await startKpassFor("scale", "off");
  const rssBefore = rssKiB(kpassBig.proc.pid);
  const tc = performance.now();
  await inParallel(CLUSTERS, 32, (i) => addCluster(kpassBig, `c${i + 1}`, upstream));
  const clusterSeconds = (performance.now() - tc) / 1000;
  const tp = performance.now();
  const measuredIndex = Math.floor(PASSES / 2);
  const measuredCluster = `c${(measuredIndex % CLUSTERS) + 1}`;
  let scaleToken = "";
  await inParallel(PASSES, 32, async (i) => {
    const token = await addPass(kpassBig, `p${String(i).padStart(5, "0")}`, `c${(i % CLUSTERS) + 1}`);
    if (i === measuredIndex) scaleToken = token;
  });
  const passSeconds = (performance.now() - tp) / 1000;
  log(`  created ${CLUSTERS} clusters in ${clusterSeconds.toFixed(1)} s (${(CLUSTERS / clusterSeconds).toFixed(0)}/s), ${PASSES} passes in ${passSeconds.toFixed(1)} s (${(PASSES / passSeconds).toFixed(0)}/s)`);
  // Every new cluster is probed once (GET /version + a status write); let that settle first.
  const tw = performance.now();
  let probed = 0;
  while (performance.now() - tw < 120_000) {
    const list = (await (await kpassBig.proc.api("GET", `${GROUP}/clusters`)).json()) as { items: { status?: { lastProbeTime?: string } }[] };
    probed = list.items.filter((c) => c.status?.lastProbeTime).length;
    if (probed >= CLUSTERS) break;
    await Bun.sleep(500);
  }
  const rssLoaded = rssKiB(kpassBig.proc.pid);
  log(`  ${probed}/${CLUSTERS} clusters probed ${((performance.now() - tw) / 1000).toFixed(1)} s later; kpass RSS ${(rssBefore / 1024).toFixed(0)} → ${(rssLoaded / 1024).toFixed(0)} MiB`);
  const scaleTarget = kpassTarget(`kpass (${PASSES} passes)`, kpassBig, measuredCluster, scaleToken, upstream);
  await checkTarget(scaleTarget, podBody);
  const [scaleOne, scaleMany] = await compare([{ ...kpassSmallOff, name: "kpass (1 pass)" }, scaleTarget], 32);
  const scaleRssMiB = rssKiB(kpassBig.proc.pid) / 1024;

  // ── summary ──
  const kpassOverNginx = { c1: roundRatios(row("kpass", 1), row("nginx", 1)), c32: roundRatios(row("kpass", 32), row("nginx", 32)) };
  const kpassOverDirect = { c1: roundRatios(row("kpass", 1), row("direct", 1)), c32: roundRatios(row("kpass", 32), row("direct", 32)) };
  const scaleRatios = roundRatios(scaleMany, scaleOne);
  const auditRatios = roundRatios(auditFile, auditOff);
  const streamGrowth = Math.max(streamKpass.rssGrowthMiB ?? NaN, streamKpass2.rssGrowthMiB ?? NaN);
  // Pass/fail uses the ratio of mean req/s over all interleaved rounds (the steadiest estimate of
  // a throughput ratio); the median of per-round ratios shows the spread, and the ratio of CPU
  // cost per request is a cross-check that a busy machine disturbs least.
  const cpuRatio = (a: Aggregate | undefined, b: Aggregate | undefined) => (a && b ? cpuPerRequestUs(b) / cpuPerRequestUs(a) : NaN);
  // Added p50 at one connection: the proxy's p50 less the direct p50 of the same run.
  const addedP50 = (r: (t: string, c: number) => Aggregate | undefined, t: string) => (r(t, 1)?.p50Ms ?? NaN) - (r("direct", 1)?.p50Ms ?? NaN);
  const streamRatio = Math.min(ratio(streamKpass.mbPerS, streamDirect.mbPerS) ?? NaN, ratio(streamKpass2.mbPerS, streamDirect.mbPerS) ?? NaN);
  const targets = [
    { name: "kpass ≥ 1.0× nginx req/s at 32 connections", value: ratio(row("kpass", 32)?.rps, row("nginx", 32)?.rps), spread: kpassOverNginx.c32, cpu: cpuRatio(row("kpass", 32), row("nginx", 32)), target: 1.0, higherIsBetter: true },
    { name: "kpass added p50 at 1 connection ÷ nginx's ≤ 1.0", value: addedP50(row, "kpass") / addedP50(row, "nginx"), spread: [] as number[], cpu: NaN, target: 1.0, higherIsBetter: false },
    ...(slowGet.length > 0
      ? [
          { name: `slow upstream (${SLOW_US} µs): kpass ≥ 1.0× nginx req/s at 32 connections`, value: ratio(slowRow("kpass", 32)?.rps, slowRow("nginx", 32)?.rps), spread: roundRatios(slowRow("kpass", 32), slowRow("nginx", 32)), cpu: cpuRatio(slowRow("kpass", 32), slowRow("nginx", 32)), target: 1.0, higherIsBetter: true },
          { name: `slow upstream: kpass added p50 at 1 connection ÷ nginx's ≤ 1.0`, value: addedP50(slowRow, "kpass") / addedP50(slowRow, "nginx"), spread: [] as number[], cpu: NaN, target: 1.0, higherIsBetter: false },
        ]
      : []),
    { name: `kpass streams a ${LIST_MIB} MiB LIST ≥ 0.9× direct (worse of two runs)`, value: streamRatio, spread: [] as number[], cpu: NaN, target: 0.9, higherIsBetter: true },
    { name: `kpass RSS growth ≤ 32 MiB while streaming ${LIST_MIB} MiB`, value: streamGrowth, spread: [] as number[], cpu: NaN, target: 32, higherIsBetter: false },
    { name: `${PASSES} passes + ${CLUSTERS} clusters ≥ 0.95× of 1 pass req/s`, value: ratio(scaleMany?.rps, scaleOne?.rps), spread: scaleRatios, cpu: cpuRatio(scaleMany, scaleOne), target: 0.95, higherIsBetter: true },
  ].map((t) => ({ ...t, met: t.value !== undefined && Number.isFinite(t.value) ? (t.higherIsBetter ? t.value >= t.target : t.value <= t.target) : undefined }));

  const ratioCell = (xs: number[]) => (xs.length === 0 ? "" : xs.length === 1 ? fmt(xs[0], 2) : `${fmt(median(xs), 2)} (${fmt(Math.min(...xs), 2)}–${fmt(Math.max(...xs), 2)})`);
  const rangeCell = (a: Aggregate) => (a.rounds.length > 1 ? `${fmt(a.minRps)}–${fmt(a.maxRps)}` : "");
  const rows: string[] = [];
  const smallRows = (list: Aggregate[], find: (t: string, c: number) => Aggregate | undefined, extra: Aggregate[] = []) => {
    const out: string[] = [];
    out.push("| GET one pod | conns | req/s (mean) | rounds min–max | p50 ms | p99 ms | ÷ nginx | ÷ direct | server CPU µs/req | CPU (100% = 1 core) |");
    out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (const r of [...list, ...extra]) {
      const inCompare = list.includes(r);
      const overNginx = inCompare && r.target !== "direct" && r.target !== "nginx" ? ratioCell(roundRatios(r, find("nginx", r.connections))) : "";
      const overDirect = inCompare && r.target !== "direct" ? ratioCell(roundRatios(r, find("direct", r.connections))) : "";
      out.push(`| ${r.target} | ${r.connections} | ${fmt(r.rps)} | ${rangeCell(r)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${overNginx} | ${overDirect} | ${fmt(cpuPerRequestUs(r))} | ${cpuText(r.cpu)} |`);
    }
    return out;
  };
  rows.push(...smallRows(smallGet, row, fixtureRows));
  const slowRows = slowGet.length > 0 ? smallRows(slowGet, slowRow) : [];
  const table2: string[] = [];
  table2.push("| stream | MiB | seconds | MB/s | ÷ direct | proxy RSS before MiB | peak MiB | growth MiB |");
  table2.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const streamRows: [string, StreamResult][] = [["direct", streamDirect], ["kpass (audit off)", streamKpass], ["kpass (audit off), 2nd run", streamKpass2], ["kpass (audit file)", streamAudit], ...bareStreams];
  for (const [name, r] of streamRows) {
    table2.push(`| ${name} | ${fmt(r.bytes / 2 ** 20)} | ${fmt(r.seconds, 2)} | ${fmt(r.mbPerS)} | ${name === "direct" ? "" : fmt(ratio(r.mbPerS, streamDirect.mbPerS), 2)} | ${fmt(r.baselineRssMiB, 1)} | ${fmt(r.peakRssMiB, 1)} | ${fmt(r.rssGrowthMiB, 1)} |`);
  }
  const table3: string[] = [];
  table3.push("| comparison at 32 connections | A req/s | B req/s | B/A median of rounds (min–max) | B/A of means | kpass CPU µs/req A → B |");
  table3.push("| --- | ---: | ---: | ---: | ---: | ---: |");
  table3.push(`| A = 1 pass, 1 cluster; B = ${PASSES} passes, ${CLUSTERS} clusters | ${fmt(scaleOne!.rps)} | ${fmt(scaleMany!.rps)} | ${ratioCell(scaleRatios)} | ${fmt(ratio(scaleMany!.rps, scaleOne!.rps), 3)} | ${fmt(cpuPerRequestUs(scaleOne!))} → ${fmt(cpuPerRequestUs(scaleMany!))} |`);
  table3.push(`| A = --audit off; B = --audit file | ${fmt(auditOff!.rps)} | ${fmt(auditFile!.rps)} | ${ratioCell(auditRatios)} | ${fmt(ratio(auditFile!.rps, auditOff!.rps), 3)} | ${fmt(cpuPerRequestUs(auditOff!))} → ${fmt(cpuPerRequestUs(auditFile!))} |`);
  const summary: string[] = ["| target | measured (ratio of mean req/s) | per-round ratios: median (range) | CPU-cost ratio | goal | met |", "| --- | ---: | ---: | ---: | ---: | --- |"];
  for (const t of targets) {
    summary.push(`| ${t.name} | ${fmt(t.value, t.higherIsBetter ? 2 : 1)} | ${ratioCell(t.spread)} | ${Number.isFinite(t.cpu) ? fmt(t.cpu, 2) : ""} | ${t.higherIsBetter ? "≥" : "≤"} ${t.target} | ${t.met === undefined ? "n/a" : t.met ? "yes" : "NO"} |`);
  }
  const totalSeconds = (performance.now() - t0) / 1000;
  const allRuns = [...smallGet, ...slowGet, auditOff!, auditFile!, scaleOne!, scaleMany!].flatMap((a) => a.rounds);
  const restCores = allRuns.reduce((s, r) => s + (r.cpu.rest ?? 0), 0) / allRuns.length;
  const noise = `Rest of the machine (other processes + kernel softirq) used ${restCores.toFixed(2)} cores on average during the load runs${restCores > 0.4 ? " — WARNING: the machine was busy with other work; treat absolute numbers as low and lean on the interleaved ratios and CPU µs/req" : ""}.`;
  const creation = `Created ${CLUSTERS} clusters in ${clusterSeconds.toFixed(1)} s and ${PASSES} passes in ${passSeconds.toFixed(1)} s through the API (32 requests in flight); all clusters probed ${probed === CLUSTERS ? "" : `(only ${probed}) `}before measuring; that kpass's RSS: ${(rssBefore / 1024).toFixed(0)} MiB empty, ${(rssLoaded / 1024).toFixed(0)} MiB loaded, ${scaleRssMiB.toFixed(0)} MiB after the load. Audit log written by the audited kpass (sections 1, 1b, 3a): ${(auditLogBytes / 2 ** 20).toFixed(1)} MiB.`;
  const markdown = [
    `Run ${meta.date}, ${meta.mode} mode: ${ROUNDS} interleaved round(s) × ${DURATION_S} s per target and concurrency (+${WARMUP_S} s warm-up), generator ${generator}${generator === "wrk" ? " -t1" : ""}, nginx ${NGINX_WORKERS} worker(s), ${meta.nproc} cores, Bun ${meta.bun}; whole run ${totalSeconds.toFixed(0)} s.`,
    "",
    noise,
    "",
    "**1. Small GET** (one 3 KB pod, TLS on both hops, keep-alive; kpass with the audit log and metrics on; ratios are medians of per-round ratios, range in brackets)",
    "",
    ...rows,
    "",
    ...(slowRows.length > 0 ? [`**1b. Small GET, slow upstream** (the same pod, the upstream spending ${SLOW_US} µs of CPU per request in ${cpus().length} worker processes, one per core, as a kube-apiserver uses every core; "upstream" CPU is all workers')`, "", ...slowRows, ""] : []),
    `**2. Streaming a ${LIST_MIB} MiB LIST** (curl client; the proxy's VmRSS sampled every 50 ms)`,
    "",
    ...table2,
    "",
    "**3. Scale and audit** (two kpass processes, measured alternately)",
    "",
    ...table3,
    "",
    creation,
    "",
    "**Targets**",
    "",
    ...summary,
  ].join("\n");

  console.log("\n" + markdown + "\n");

  mkdirSync(OUT_DIR, { recursive: true });
  const json = {
    meta: { ...meta, totalSeconds, restCores },
    smallGet: [...smallGet, ...fixtureRows],
    slowGet,
    ratios: { kpassOverNginx, kpassOverDirect },
    stream: { direct: streamDirect, kpass: streamKpass, kpassAgain: streamKpass2, kpassAudit: streamAudit, bare: Object.fromEntries(bareStreams) },
    scale: { passes: PASSES, clusters: CLUSTERS, clusterCreateSeconds: clusterSeconds, passCreateSeconds: passSeconds, probed, rssEmptyMiB: rssBefore / 1024, rssLoadedMiB: rssLoaded / 1024, rssAfterMiB: scaleRssMiB, onePass: scaleOne, manyPasses: scaleMany, roundRatios: scaleRatios },
    audit: { off: auditOff, file: auditFile, roundRatios: auditRatios, auditLogBytes },
    targets,
    markdown,
  };
  const stamp = meta.date.replace(/[:.]/g, "-");
  writeFileSync(join(OUT_DIR, `bench-${meta.mode}-${stamp}.json`), JSON.stringify(json, null, 2));
  writeFileSync(join(OUT_DIR, `latest-${meta.mode}.json`), JSON.stringify(json, null, 2));
  writeFileSync(join(OUT_DIR, `latest-${meta.mode}.md`), markdown + "\n");
  log(`wrote ${join(OUT_DIR, `latest-${meta.mode}.json`)} (and .md); total ${totalSeconds.toFixed(0)} s`);
}

try {
  await main();
} catch (error) {
  log(`FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
