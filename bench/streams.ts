#!/usr/bin/env bun
/**
 * Stream benchmark: kpass's upgrade tunnel (exec / port-forward over SPDY/3.1 and WebSocket) next to
 * a direct connection to the same fixture cluster, measured alternately in one run. See
 * bench/README.md ("Streams").
 *
 *   bun bench/streams.ts            full run (~1.5 minutes)
 *   bun bench/streams.ts --quick    smoke run (~10 s)
 *
 * Processes: this script (driver, TCP sink/source, raw clients), one fixture child process (the
 * node:https fake apiserver with the stream fixture; this same file with --child-fixture), a bare
 * Bun TLS relay (--child-relay: the floor for any tunnel on Bun sockets), one kpass, and kubectl processes (port-forward, exec -i cat). All on 127.0.0.1; every transfer and every
 * ping is bounded in time; only processes started here are stopped, by pid.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { parseArgs } from "node:util";
import type { Socket, Subprocess } from "bun";
import type { Duplex } from "node:stream";
import { Exec, KubeConfig } from "@kubernetes/client-node";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { startTestCluster, type TestCluster, type UpgradeHandler } from "../test/fixture/cluster/server.ts";
import { createStreamUpgradeHandler } from "../test/fixture/streams/index.ts";
import { clusterManifest, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "../test/harness/kpass.ts";
import { kubectlBinary, kubectlEnv, type KubectlVersion } from "../test/harness/kubectl.ts";

// ───────────────────────────── options ─────────────────────────────

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    "mib-per-round": { type: "string" },
    pings: { type: "string" },
    "no-client-node": { type: "boolean", default: false },
    "no-raw": { type: "boolean", default: false },
    setups: { type: "string" },
    only: { type: "string" },
    "kubectl-setups": { type: "string" },
    out: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
    // internal: the fixture child process
    "child-fixture": { type: "boolean", default: false },
    "child-relay": { type: "boolean", default: false },
    "sink-port": { type: "string" },
    "source-port": { type: "string" },
    token: { type: "string" },
    "relay-target": { type: "string" },
    "relay-ca": { type: "string" },
  },
});

if (flags.help) {
  console.log(`usage: bun bench/streams.ts [--quick] [--rounds N] [--mib-per-round N] [--pings N] [--no-client-node] [--no-raw] [--out DIR]
  --rounds N          interleaved throughput rounds (default 10; quick 2)
  --mib-per-round N   MiB per transfer and round, each direction (default 128; quick 16) → N × rounds MiB per cell
  --pings N           measured 1-byte round trips per exec session (default 2000; quick 300), after a warm-up
  --setups N          raw upgrades (TLS connect → 101) timed per path (default 300; quick 60)
  --kubectl-setups N  \`kubectl exec POD -- true\` runs timed per path and version (default 20; quick 3)
  --no-client-node    skip the @kubernetes/client-node Exec latency rows
  --only LIST         run only some parts: comma-separated throughput,latency,setup (default all)
  --no-raw            skip the raw-tunnel rows (kpass's tunnel with no SPDY/WebSocket framing on either end)
env: BENCH_ROUNDS, BENCH_STREAM_MIB, BENCH_PINGS, BENCH_SETUPS, BENCH_KUBECTL_SETUPS`);
  process.exit(0);
}

const SINK_POD_PORT = 5001;
const SOURCE_POD_PORT = 5002;
const POD = "web-0";
const NAMESPACE = "default";
const MiB = 1024 * 1024;

// ───────────────────────────── fixture child ─────────────────────────────

/**
 * The fake apiserver in its own process, so its CPU is measured apart from kpass and the driver.
 * Upgrades with `bench=…` in the query go to a raw handler (no SPDY/WebSocket: after the 101 the
 * socket is a byte sink, source or echo), everything else to the stream fixture.
 */
async function fixtureChild(): Promise<void> {
  const sinkPort = Number(flags["sink-port"]);
  const sourcePort = Number(flags["source-port"]);
  const streams = createStreamUpgradeHandler({
    portForwardTarget: (port) => {
      if (port === SINK_POD_PORT) return { host: "127.0.0.1", port: sinkPort };
      if (port === SOURCE_POD_PORT) return { host: "127.0.0.1", port: sourcePort };
      throw new Error(`connection refused (bench pod serves ${SINK_POD_PORT} and ${SOURCE_POD_PORT})`);
    },
  });
  const block = randomBlock();
  const raw = (socket: Duplex, head: Buffer, query: URLSearchParams) => {
    const mode = query.get("bench");
    const bytes = Number(query.get("bytes") ?? 0);
    socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n");
    if (mode === "echo") {
      socket.on("data", (chunk: Buffer) => socket.write(chunk));
      if (head.length) socket.write(head);
      socket.on("end", () => socket.end());
    } else if (mode === "sink") {
      let got = head.length;
      let acked = false;
      const check = () => {
        if (!acked && got >= bytes) {
          acked = true;
          socket.end(`done ${got}\n`);
        }
      };
      socket.on("data", (chunk: Buffer) => {
        got += chunk.length;
        check();
      });
      check();
    } else if (mode === "source") {
      let sent = 0;
      const pump = () => {
        while (sent < bytes) {
          const offset = sent % block.length;
          const n = Math.min(block.length - offset, bytes - sent);
          sent += n;
          if (!socket.write(block.subarray(offset, offset + n))) {
            socket.once("drain", pump);
            return;
          }
        }
        socket.end();
      };
      pump();
      socket.on("data", () => {});
    } else {
      socket.destroy();
    }
  };
  const upgrade: UpgradeHandler = (req, socket, head, target) => {
    if (target.query.has("bench")) raw(socket, head, target.query);
    else streams.handler(req, socket, head, target);
  };
  const cluster = await startTestCluster({ credential: { type: "token", token: flags.token ?? "bench-token" }, upgrade, recordRequests: false });
  console.log(`READY ${JSON.stringify({ url: cluster.url, caPem: cluster.caPem })}`);
  const stop = async () => {
    await cluster.stop().catch(() => {});
    await streams.close().catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  // Commands from the driver, one per line: "sessions" prints what the fixture negotiated.
  for await (const line of console) {
    if (line.trim() === "sessions") {
      const summary = streams.sessions.all.map((s) => ({ kind: s.kind, transport: s.transport, protocol: s.protocol, command: s.command, ports: s.forwardedPorts.length }));
      console.log(`SESSIONS ${JSON.stringify(summary)}`);
    }
  }
  await stop();
}

function randomBlock(): Buffer {
  const block = Buffer.allocUnsafe(MiB);
  for (let i = 0; i < block.length; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));
  return block;
}

/**
 * The floor for any TLS-terminating tunnel on Bun sockets: a TLS Bun.listen that, for every
 * connection, opens a TLS Bun.connect to the fixture and moves bytes both ways (backpressure by
 * pause/resume, half-close passed on). No HTTP parsing, no authn/authz: clients send it the same
 * request as to the fixture.
 */
async function relayChild(): Promise<void> {
  const target = new URL(flags["relay-target"]!);
  const upstreamCa = Buffer.from(flags["relay-ca"]!, "base64").toString("utf8");
  const authority = await createCertificateAuthority("bench-relay-ca");
  const serving = await issueServingCertificate(authority, { commonName: "relay", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  interface Side {
    socket?: Socket<Side>;
    peer?: Side;
    queue: Uint8Array[];
    fin: boolean;
    closed: boolean;
  }
  const newSide = (): Side => ({ queue: [], fin: false, closed: false });
  const send = (to: Side, chunk: Uint8Array) => {
    if (to.closed) return;
    if (!to.socket || to.queue.length > 0) {
      to.queue.push(chunk);
      to.peer?.socket?.pause();
      return;
    }
    const written = to.socket.write(chunk);
    if (written < chunk.byteLength) {
      to.queue.push(chunk.subarray(Math.max(written, 0)));
      to.peer?.socket?.pause();
    }
  };
  const flush = (side: Side) => {
    const socket = side.socket;
    if (!socket || side.closed) return;
    while (side.queue.length > 0) {
      const chunk = side.queue[0]!;
      const written = socket.write(chunk);
      if (written < chunk.byteLength) {
        side.queue[0] = chunk.subarray(Math.max(written, 0));
        return;
      }
      side.queue.shift();
    }
    side.peer?.socket?.resume();
    if (side.fin) socket.shutdown();
  };
  const gone = (side: Side | undefined) => {
    if (!side || side.closed) return;
    side.closed = true;
    const peer = side.peer;
    if (peer && !peer.closed) {
      peer.closed = true;
      peer.socket?.end();
    }
  };
  const handlers = {
    data: (socket: Socket<Side>, chunk: Uint8Array) => socket.data?.peer && send(socket.data.peer, chunk),
    drain: (socket: Socket<Side>) => socket.data && flush(socket.data),
    end: (socket: Socket<Side>) => {
      const peer = socket.data?.peer;
      if (!peer) return;
      peer.fin = true;
      if (peer.socket && peer.queue.length === 0) peer.socket.shutdown();
    },
    close: (socket: Socket<Side>) => gone(socket.data),
    error: (socket: Socket<Side>) => gone(socket.data),
  };
  const listener = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    tls: { cert: serving.certPem, key: serving.keyPem },
    socket: {
      ...handlers,
      open(client) {
        const down = newSide();
        const up = newSide();
        down.socket = client;
        down.peer = up;
        up.peer = down;
        client.data = down;
        Bun.connect<Side>({
          hostname: target.hostname,
          port: Number(target.port),
          data: up,
          allowHalfOpen: true,
          tls: { ca: upstreamCa, rejectUnauthorized: true },
          socket: {
            ...handlers,
            handshake(socket, success) {
              if (!success) {
                socket.end();
                return;
              }
              up.socket = socket;
              flush(up);
            },
            connectError: () => gone(up),
          },
        }).catch(() => gone(up));
      },
    },
  });
  console.log(`READY ${JSON.stringify({ url: `https://127.0.0.1:${listener.port}`, caPem: authority.certPem })}`);
  const stop = () => {
    listener.stop(true);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await new Promise(() => {});
}

if (flags["child-fixture"]) {
  await fixtureChild();
  process.exit(0);
}
if (flags["child-relay"]) {
  await relayChild();
}

// ───────────────────────────── settings ─────────────────────────────

const QUICK = flags.quick || process.env.BENCH_QUICK === "1";
const opt = (flag: string | undefined, env: string, full: string, quick: string) => Number(flag ?? process.env[env] ?? (QUICK ? quick : full));
const ROUNDS = Math.max(1, Math.round(opt(flags.rounds, "BENCH_ROUNDS", "10", "2")));
const ONLY = new Set((flags.only ?? "throughput,latency,setup").split(",").map((p) => p.trim()));
const MIB_PER_ROUND = Math.max(1, opt(flags["mib-per-round"], "BENCH_STREAM_MIB", "128", "16"));
const SETUPS = Math.max(1, Math.round(opt(flags.setups, "BENCH_SETUPS", "300", "60")));
const KUBECTL_SETUPS = Math.max(0, Math.round(opt(flags["kubectl-setups"], "BENCH_KUBECTL_SETUPS", "20", "3")));
const PINGS = Math.max(10, Math.round(opt(flags.pings, "BENCH_PINGS", "2000", "300")));
const WARMUP_PINGS = QUICK ? 30 : 100;
const BLOCK_PINGS = QUICK ? 50 : 100;
const TRANSFER_TIMEOUT_MS = QUICK ? 30_000 : 60_000;
const PING_TIMEOUT_MS = 5_000;
/** The whole run stops measuring after this (it still reports what it has). */
const RUN_DEADLINE = Date.now() + (QUICK ? 150_000 : 300_000);
const OUT_DIR = flags.out ?? join(import.meta.dir, "out");
const TOKEN = "bench-token";
const VERSIONS: { version: KubectlVersion; pf: string; exec: string }[] = [
  { version: "1.33", pf: "WebSocket (SPDY/3.1+portforward.k8s.io)", exec: "WebSocket v5.channel.k8s.io" },
  { version: "1.29", pf: "SPDY/3.1 portforward.k8s.io", exec: "SPDY/3.1 v4.channel.k8s.io" },
];
/** direct: to the fixture; relay: through a minimal Bun TLS relay (no HTTP, no kpass logic); kpass. */
type PathName = "direct" | "relay" | "kpass";
const PATHS: PathName[] = ["direct", "relay", "kpass"];

const log = (message: string) => process.stderr.write(`[streams] ${message}\n`);
const BLOCK = randomBlock();

// ───────────────────────────── /proc sampling ─────────────────────────────

const CLK_TCK = 100;

interface ProcStat {
  ppid: number;
  /** utime + stime, seconds */
  self: number;
  /** cutime + cstime (reaped children), seconds */
  reaped: number;
}

function readStat(pid: number | string): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / CLK_TCK, reaped: (Number(f[13]) + Number(f[14])) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** Busy CPU seconds of the whole machine (all cores, softirq included) from /proc/stat. */
function machineBusySeconds(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - f[3]! - f[4]!) / CLK_TCK;
}

type Role = "kpass" | "relay" | "fixture" | "kubectl" | "bench" | "rest";
const ROLES: Role[] = ["kpass", "relay", "fixture", "kubectl", "bench", "rest"];
type CpuByRole = Record<Role, number>;
const zeroCpu = (): CpuByRole => ({ kpass: 0, relay: 0, fixture: 0, kubectl: 0, bench: 0, rest: 0 });

const tracked = { kpass: 0, relay: 0, fixture: 0, kubectl: new Set<number>() };

/**
 * CPU seconds by role right now. kpass: its process. fixture: its process, its live descendants
 * (the `cat`s of exec) and its reaped children. kubectl: the kubectl processes of the session being
 * measured. bench: this process (driver, TCP sink/source, raw and client-node clients). rest: the
 * machine's busy time minus all of that (other processes, kernel softirq, idle kubectls).
 */
function sampleCpu(): { byRole: CpuByRole; busy: number } {
  const stats = new Map<number, ProcStat>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(name);
    if (stat) stats.set(Number(name), stat);
  }
  const busy = machineBusySeconds();
  const byRole = zeroCpu();
  const of = (pid: number) => stats.get(pid)?.self ?? 0;
  byRole.kpass = of(tracked.kpass);
  byRole.relay = of(tracked.relay);
  byRole.bench = of(process.pid);
  for (const pid of tracked.kubectl) byRole.kubectl += of(pid);
  // fixture and everything below it
  const children = new Map<number, number[]>();
  for (const [pid, stat] of stats) {
    const list = children.get(stat.ppid) ?? [];
    list.push(pid);
    children.set(stat.ppid, list);
  }
  const stack = [tracked.fixture];
  while (stack.length) {
    const pid = stack.pop()!;
    const stat = stats.get(pid);
    if (!stat) continue;
    byRole.fixture += stat.self + (pid === tracked.fixture ? stat.reaped : 0);
    stack.push(...(children.get(pid) ?? []));
  }
  return { byRole, busy };
}

function cpuDelta(before: ReturnType<typeof sampleCpu>, after: ReturnType<typeof sampleCpu>): CpuByRole {
  const d = zeroCpu();
  let known = 0;
  for (const role of ROLES) {
    if (role === "rest") continue;
    d[role] = Math.max(0, after.byRole[role] - before.byRole[role]);
    known += d[role];
  }
  d.rest = Math.max(0, after.busy - before.busy - known);
  return d;
}

function addCpu(into: CpuByRole, more: CpuByRole): void {
  for (const role of ROLES) into[role] += more[role];
}

// ───────────────────────────── process helpers ─────────────────────────────

const started = new Set<Subprocess>();
process.on("exit", () => {
  for (const proc of started) {
    try {
      process.kill(proc.pid, "SIGKILL");
    } catch {}
  }
});

async function stopProcess(proc: Subprocess): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) {
    try {
      process.kill(proc.pid, "SIGTERM");
    } catch {}
    const timer = setTimeout(() => {
      try {
        process.kill(proc.pid, "SIGKILL");
      } catch {}
    }, 3000);
    await proc.exited;
    clearTimeout(timer);
  }
  started.delete(proc);
  tracked.kubectl.delete(proc.pid);
}

/** Reads a process's stdout line by line until `match` returns something (bounded in time). */
interface ByteReader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
}

async function waitForLines<T>(stream: ReadableStream<Uint8Array>, match: (text: string) => T | undefined, timeoutMs: number, what: string): Promise<{ value: T; reader: ByteReader }> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`${what}: timed out; output so far: ${JSON.stringify(text.slice(-500))}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([reader.read(), new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), remaining)))]);
    clearTimeout(timer);
    if (result === "timeout") throw new Error(`${what}: timed out; output so far: ${JSON.stringify(text.slice(-500))}`);
    if (result.done || !result.value) throw new Error(`${what}: process ended; output: ${JSON.stringify(text.slice(-500))}`);
    text += decoder.decode(result.value, { stream: true });
    const value = match(text);
    if (value !== undefined) return { value, reader };
  }
}

// ───────────────────────────── machine ─────────────────────────────

function machineInfo() {
  const cpuinfo = (() => {
    try {
      return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return "";
    }
  })();
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "?";
  const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(cpuinfo)?.[1];
  const loadavg = readFileSync("/proc/loadavg", "utf8").trim().split(" ").slice(0, 3).join(" ");
  return { cores: cpus().length, model: model + (mhz ? ` (${Math.round(Number(mhz))} MHz)` : ""), memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, bun: Bun.version, loadavgAtStart: loadavg };
}

async function kubectlVersionString(version: KubectlVersion): Promise<string> {
  const proc = Bun.spawn([kubectlBinary(version), "version", "--client", "-o", "json"], { stdout: "pipe", stderr: "ignore", env: kubectlEnv() });
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  try {
    return (JSON.parse(text) as { clientVersion: { gitVersion: string } }).clientVersion.gitVersion;
  } catch {
    return version;
  }
}

// ───────────────────────────── TCP sink and source ("the pod's ports") ─────────────────────────────

/** Bytes the sink received since the start; a transfer waits for it to reach its goal. */
const sink = { received: 0, goal: Infinity, reached: undefined as (() => void) | undefined };
/** Bytes the source sends on each new connection. */
let sourceBytes = 0;

interface SourceState {
  left: number;
  offset: number;
}

/** Writes what `state` still owes to `socket`, as fast as the socket takes it; false once done. */
function pump(socket: Socket<SourceState>, state: SourceState): boolean {
  while (state.left > 0) {
    const n = Math.min(state.left, BLOCK.length - state.offset);
    const written = socket.write(BLOCK, state.offset, n);
    if (written <= 0) return true;
    state.left -= written;
    state.offset = (state.offset + written) % BLOCK.length;
    if (written < n) return true;
  }
  return false;
}

function startSinkAndSource() {
  const sinkServer = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_socket, data) {
        sink.received += data.byteLength;
        if (sink.received >= sink.goal && sink.reached) {
          const done = sink.reached;
          sink.reached = undefined;
          done();
        }
      },
      error() {},
    },
  });
  const sourceServer = Bun.listen<SourceState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { left: sourceBytes, offset: 0 };
        if (!pump(socket, socket.data)) socket.end();
      },
      drain(socket) {
        if (!pump(socket, socket.data)) socket.end();
      },
      data() {},
      error() {},
    },
  });
  return { sinkServer, sourceServer };
}

// ───────────────────────────── transfers ─────────────────────────────

interface Transfer {
  bytes: number;
  seconds: number;
  timedOut: boolean;
  cpu: CpuByRole;
}

type Opener = (handlers: { open(socket: Socket<SourceState>): void; data(socket: Socket<SourceState>, data: Uint8Array): void; drain(socket: Socket<SourceState>): void; close(): void }) => Promise<Socket<SourceState>>;

/** Plain TCP to a local port (kubectl port-forward's listener). */
function tcpOpener(port: number): Opener {
  return (h) =>
    Bun.connect<SourceState>({
      hostname: "127.0.0.1",
      port,
      socket: { open: h.open, data: h.data, drain: h.drain, close: h.close, error: h.close, connectError: h.close },
    });
}

/**
 * Upload: the client writes `bytes` and the time ends when the receiver has them all (the TCP sink
 * behind port-forward, or the raw fixture's "done" line).
 * Download: the source (TCP source behind port-forward, or the raw fixture) sends `bytes`; the time
 * ends when the client has read them all.
 */
async function transfer(open: Opener, direction: "up" | "down", bytes: number, raw: boolean): Promise<Transfer> {
  const before = sampleCpu();
  const t0 = performance.now();
  let received = 0;
  let socket: Socket<SourceState> | undefined;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  if (direction === "up" && !raw) {
    sink.received = 0;
    sink.goal = bytes;
    sink.reached = finish;
  }
  if (direction === "down") sourceBytes = bytes;
  const state: SourceState = { left: direction === "up" ? bytes : 0, offset: 0 };
  const rawAck = Buffer.from("done");
  let rawText = "";
  try {
    socket = await open({
      open(s) {
        s.data = state;
        pump(s, state);
      },
      drain(s) {
        pump(s, state);
      },
      data(_s, data) {
        if (direction === "down") {
          received += data.byteLength;
          if (received >= bytes) finish();
        } else if (raw) {
          rawText += Buffer.from(data).toString("latin1");
          if (rawText.includes(rawAck.toString())) finish();
        }
      },
      close() {
        finish();
      },
    });
  } catch (error) {
    log(`transfer: connect failed: ${(error as Error).message}`);
    finish();
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), TRANSFER_TIMEOUT_MS)))]);
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  const after = sampleCpu();
  sink.reached = undefined;
  sink.goal = Infinity;
  const moved = direction === "down" ? received : raw ? (rawText.includes("done") ? bytes : bytes - state.left) : sink.received;
  socket?.end();
  if (moved < bytes && !timedOut) log(`transfer ${direction}: only ${moved} of ${bytes} bytes arrived before the connection closed`);
  // Let the connection's teardown happen before the next measurement starts.
  await Bun.sleep(QUICK ? 50 : 100);
  return { bytes: Math.min(moved, bytes), seconds, timedOut: timedOut || moved < bytes, cpu: cpuDelta(before, after) };
}

// ───────────────────────────── raw upgraded connections ─────────────────────────────

interface Endpoint {
  /** https://host:port and the path prefix of the pod API ("" or kpass's cluster proxy prefix). */
  url: URL;
  prefix: string;
  caPem: string;
  token: string;
}

function rawHead(endpoint: Endpoint, query: string): string {
  return (
    `POST ${endpoint.prefix}/api/v1/namespaces/${NAMESPACE}/pods/${POD}/exec?command=bench&stdin=true&stdout=true&${query} HTTP/1.1\r\n` +
    `Host: ${endpoint.url.host}\r\nAuthorization: Bearer ${endpoint.token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`
  );
}

/**
 * A TLS connection that sent an upgrade request and read the 101; after that, `handlers` get the
 * raw bytes. Bytes that followed the 101 in the same read are passed on.
 */
function rawOpener(endpoint: Endpoint, query: string): Opener {
  return (h) =>
    new Promise<Socket<SourceState>>((resolve, reject) => {
      let upgraded = false;
      let headText = "";
      const timer = setTimeout(() => reject(new Error("raw upgrade timed out")), 10_000);
      Bun.connect<SourceState>({
        hostname: endpoint.url.hostname,
        port: Number(endpoint.url.port),
        tls: { ca: endpoint.caPem },
        socket: {
          open(socket) {
            socket.write(rawHead(endpoint, query));
          },
          data(socket, data) {
            if (upgraded) return h.data(socket, data);
            headText += Buffer.from(data).toString("latin1");
            const end = headText.indexOf("\r\n\r\n");
            if (end < 0) return;
            if (!headText.startsWith("HTTP/1.1 101")) {
              clearTimeout(timer);
              reject(new Error(`raw upgrade refused: ${headText.slice(0, 300)}`));
              socket.end();
              return;
            }
            upgraded = true;
            clearTimeout(timer);
            h.open(socket);
            resolve(socket);
            const rest = Buffer.from(headText.slice(end + 4), "latin1");
            if (rest.length) h.data(socket, rest);
          },
          drain(socket) {
            if (upgraded) h.drain(socket);
          },
          close() {
            clearTimeout(timer);
            if (!upgraded) reject(new Error(`raw upgrade: connection closed: ${headText.slice(0, 300)}`));
            h.close();
          },
          error(_socket, error) {
            clearTimeout(timer);
            reject(error);
          },
          connectError(_socket, error) {
            clearTimeout(timer);
            reject(error);
          },
        },
      }).catch(reject);
    });
}

// ───────────────────────────── kubectl ─────────────────────────────

interface PortForward {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  sinkPort: number;
  sourcePort: number;
}

async function startPortForward(version: KubectlVersion, kubeconfig: string): Promise<PortForward> {
  const proc = Bun.spawn([kubectlBinary(version), "--kubeconfig", kubeconfig, "-n", NAMESPACE, "port-forward", `pod/${POD}`, `:${SINK_POD_PORT}`, `:${SOURCE_POD_PORT}`, "--address", "127.0.0.1"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: kubectlEnv(),
  });
  started.add(proc);
  const { value, reader } = await waitForLines(
    proc.stdout,
    (text) => {
      const sinkPort = new RegExp(`Forwarding from 127\\.0\\.0\\.1:(\\d+) -> ${SINK_POD_PORT}`).exec(text)?.[1];
      const sourcePort = new RegExp(`Forwarding from 127\\.0\\.0\\.1:(\\d+) -> ${SOURCE_POD_PORT}`).exec(text)?.[1];
      return sinkPort && sourcePort ? { sinkPort: Number(sinkPort), sourcePort: Number(sourcePort) } : undefined;
    },
    20_000,
    `kubectl ${version} port-forward`,
  );
  // Keep draining its output ("Handling connection for …") so kubectl never blocks on a full pipe.
  void (async () => {
    for (;;) if ((await reader.read()).done) return;
  })();
  void new Response(proc.stderr).text();
  return { proc, ...value };
}

// ───────────────────────────── echo sessions (latency) ─────────────────────────────

interface EchoSession {
  /** what is measured, without the path ("kubectl 1.33 exec -i cat") */
  base: string;
  name: string;
  path: PathName | "local";
  client: string;
  /** kubectl pid, when the session is a kubectl process */
  pid?: number;
  /** Sends one byte and resolves with the round trip in µs once it is back. */
  ping(): Promise<number>;
  close(): Promise<void>;
  samples: number[];
  cpu: CpuByRole;
  blockP50: number[];
  failed?: string;
}

const ONE = new Uint8Array([0x61]);

/** Round trips over a process's stdin/stdout (kubectl exec -i … cat, or a local cat). */
async function processEcho(base: string, path: PathName | "local", client: string, argv: string[], env: Record<string, string>): Promise<EchoSession> {
  const name = path === "local" ? base : `${base}, ${path}`;
  const proc = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe", env });
  started.add(proc);
  const stderr = new Response(proc.stderr).text();
  let pending: ((value: number) => void) | undefined;
  let sentAt = 0;
  let outstanding = 0;
  let ended = false;
  void (async () => {
    const reader = proc.stdout.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        pending?.(NaN);
        return;
      }
      outstanding -= value.byteLength;
      if (outstanding <= 0 && pending) {
        const resolve = pending;
        pending = undefined;
        resolve((Bun.nanoseconds() - sentAt) / 1000);
      }
    }
  })();
  const session: EchoSession = {
    base,
    name,
    path,
    client,
    pid: proc.pid,
    samples: [],
    cpu: zeroCpu(),
    blockP50: [],
    ping() {
      if (ended) return Promise.reject(new Error(`${name}: process ended: ${proc.exitCode}`));
      return new Promise<number>((resolve) => {
        outstanding += 1;
        pending = resolve;
        sentAt = Bun.nanoseconds();
        proc.stdin.write(ONE);
        void proc.stdin.flush();
      });
    },
    async close() {
      try {
        void proc.stdin.end();
      } catch {}
      const timer = setTimeout(() => void stopProcess(proc), 3000);
      await proc.exited;
      clearTimeout(timer);
      started.delete(proc);
      const text = await stderr;
      if (text.trim() && !session.failed) session.failed = text.trim().slice(0, 300);
    },
  };
  return session;
}

/** Round trips over a raw upgraded connection that the fixture echoes (no framing, no kubectl). */
async function rawEcho(base: string, path: PathName, endpoint: Endpoint): Promise<EchoSession> {
  const name = `${base}, ${path}`;
  let pending: ((value: number) => void) | undefined;
  let sentAt = 0;
  const socket = await rawOpener(endpoint, "bench=echo")({
    open() {},
    drain() {},
    data() {
      if (pending) {
        const resolve = pending;
        pending = undefined;
        resolve((Bun.nanoseconds() - sentAt) / 1000);
      }
    },
    close() {
      pending?.(NaN);
    },
  });
  return {
    base,
    name,
    path,
    client: "raw TLS upgrade (fixture echoes bytes)",
    samples: [],
    cpu: zeroCpu(),
    blockP50: [],
    ping() {
      return new Promise<number>((resolve) => {
        pending = resolve;
        sentAt = Bun.nanoseconds();
        socket.write(ONE);
      });
    },
    async close() {
      socket.end();
    },
  };
}

/** Round trips through @kubernetes/client-node Exec (WebSocket v5.channel.k8s.io), in this process. */
async function clientNodeEcho(base: string, path: PathName, kubeconfig: string): Promise<EchoSession> {
  const name = `${base}, ${path}`;
  const config = new KubeConfig();
  config.loadFromFile(kubeconfig);
  const exec = new Exec(config);
  let pending: ((value: number) => void) | undefined;
  let sentAt = 0;
  const stdout = new Writable({
    write(_chunk: Buffer, _encoding, callback) {
      if (pending) {
        const resolve = pending;
        pending = undefined;
        resolve((Bun.nanoseconds() - sentAt) / 1000);
      }
      callback();
    },
  });
  const stdin = new PassThrough();
  const ws = (await exec.exec(NAMESPACE, POD, "main", ["cat"], stdout, null, stdin, false)) as unknown as { close(): void };
  return {
    base,
    name,
    path,
    client: "@kubernetes/client-node Exec, WebSocket v5.channel.k8s.io",
    samples: [],
    cpu: zeroCpu(),
    blockP50: [],
    ping() {
      return new Promise<number>((resolve) => {
        pending = resolve;
        sentAt = Bun.nanoseconds();
        stdin.write(Buffer.from(ONE));
      });
    },
    async close() {
      stdin.end();
      ws.close();
    },
  };
}

async function timedPing(session: EchoSession): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([session.ping(), new Promise<number>((resolve) => (timer = setTimeout(() => resolve(NaN), PING_TIMEOUT_MS)))]);
  clearTimeout(timer);
  if (!Number.isFinite(result)) throw new Error(`${session.name}: no echo within ${PING_TIMEOUT_MS} ms`);
  return result;
}

// ───────────────────────────── statistics ─────────────────────────────

function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}
const median = (values: number[]) => quantile(values, 0.5);
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const fmt = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");


// ───────────────────────────── upgrade set-up ─────────────────────────────

/** TLS connect + upgrade request until the 101 is read, in ms (then the connection is closed). */
async function rawSetupMs(endpoint: Endpoint): Promise<number> {
  const t0 = performance.now();
  const socket = await rawOpener(endpoint, "bench=echo")({ open() {}, data() {}, drain() {}, close() {} });
  const ms = performance.now() - t0;
  socket.end();
  return ms;
}

/** Wall time of `kubectl exec POD -- true` (process start, GET pod, upgrade, exit status), in ms. */
async function kubectlExecTrueMs(version: KubectlVersion, kubeconfig: string): Promise<number> {
  const t0 = performance.now();
  const proc = Bun.spawn([kubectlBinary(version), "--kubeconfig", kubeconfig, "-n", NAMESPACE, "exec", POD, "--", "true"], { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: kubectlEnv() });
  started.add(proc);
  const timer = setTimeout(() => void stopProcess(proc), 30_000);
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  clearTimeout(timer);
  started.delete(proc);
  if (code !== 0) throw new Error(`kubectl ${version} exec true exited ${code}: ${stderr.slice(0, 300)}`);
  return performance.now() - t0;
}

// ───────────────────────────── main ─────────────────────────────

interface Cell {
  key: string;
  label: string;
  protocol: string;
  path: PathName;
  direction: "up" | "down";
  transfers: Transfer[];
}

interface SetupRow {
  key: string;
  label: string;
  path: PathName;
  ms: number[];
}

/** Starts a child (this file with `flag`) and waits for its READY line. */
async function startChild(flag: string, args: string[]): Promise<{ proc: Subprocess<"pipe", "pipe", "inherit">; info: { url: string; caPem: string }; reader: ByteReader }> {
  const proc = Bun.spawn([process.execPath, import.meta.path, flag, ...args], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  started.add(proc);
  const ready = await waitForLines(proc.stdout, (text) => /READY (.*)\n/.exec(text)?.[1], 20_000, flag);
  return { proc, info: JSON.parse(ready.value) as { url: string; caPem: string }, reader: ready.reader };
}

function rotate<T>(items: T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length]!);
}

async function main(): Promise<void> {
  const runStarted = new Date();
  const t0 = performance.now();
  const machine = machineInfo();
  log(`${QUICK ? "quick" : "full"} run: ${ROUNDS} rounds × ${MIB_PER_ROUND} MiB per cell, ${PINGS} pings per session; load average ${machine.loadavgAtStart}`);
  const workDir = mkdtempSync(join(tmpdir(), "kpass-bench-streams-"));
  const { sinkServer, sourceServer } = startSinkAndSource();
  let kpass: KpassProcess | undefined;
  const children: Subprocess[] = [];
  const portForwards: PortForward[] = [];
  const sessions: EchoSession[] = [];
  const busyAtStart = machineBusySeconds();
  try {
    // The fixture cluster and the bare relay, each in its own process.
    const fixture = await startChild("--child-fixture", ["--sink-port", String(sinkServer.port), "--source-port", String(sourceServer.port), "--token", TOKEN]);
    children.push(fixture.proc);
    tracked.fixture = fixture.proc.pid;
    const fixtureInfo = fixture.info;
    const fixtureLines: string[] = [];
    void (async () => {
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const { value, done } = await fixture.reader.read();
        if (done || !value) return;
        buffered += decoder.decode(value, { stream: true });
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        fixtureLines.push(...lines);
      }
    })();
    const fixtureSessions = async () => {
      fixture.proc.stdin.write("sessions\n");
      await fixture.proc.stdin.flush();
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        const line = fixtureLines.find((l) => l.startsWith("SESSIONS "));
        if (line) {
          fixtureLines.length = 0;
          return JSON.parse(line.slice(9)) as { kind: string; transport: string; protocol: string; command?: string[]; ports: number }[];
        }
        await Bun.sleep(20);
      }
      return [];
    };
    const relay = await startChild("--child-relay", ["--relay-target", fixtureInfo.url, "--relay-ca", Buffer.from(fixtureInfo.caPem).toString("base64")]);
    children.push(relay.proc);
    tracked.relay = relay.proc.pid;

    // kpass, one Cluster pointing at the fixture.
    kpass = await startKpass({ args: ["--probe-interval", "1h", "--audit", "off"] });
    tracked.kpass = kpass.pid;
    const manifest = clusterManifest("bench", { url: fixtureInfo.url, caPem: fixtureInfo.caPem } as TestCluster, { token: TOKEN });
    const created = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/clusters", manifest);
    if (created.status !== 201) throw new Error(`creating the cluster: ${created.status} ${await created.text()}`);

    const plainKubeconfig = (file: string, server: string, caPem: string) => {
      writeFileSync(
        file,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          "current-context": "bench",
          clusters: [{ name: "bench", cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") } }],
          users: [{ name: "u", user: { token: TOKEN } }],
          contexts: [{ name: "bench", context: { cluster: "bench", user: "u" } }],
        }),
      );
      return file;
    };
    const kubeconfigs: Record<PathName, string> = {
      direct: plainKubeconfig(join(workDir, "direct.kubeconfig"), fixtureInfo.url, fixtureInfo.caPem),
      relay: plainKubeconfig(join(workDir, "relay.kubeconfig"), relay.info.url, relay.info.caPem),
      kpass: writeKubeconfig(kpass, kpass.adminToken, { bench: proxyUrl(kpass, "bench") }, join(workDir, "kpass.kubeconfig")),
    };
    const endpoints: Record<PathName, Endpoint> = {
      direct: { url: new URL(fixtureInfo.url), prefix: "", caPem: fixtureInfo.caPem, token: TOKEN },
      relay: { url: new URL(relay.info.url), prefix: "", caPem: relay.info.caPem, token: TOKEN },
      kpass: { url: new URL(kpass.url), prefix: new URL(proxyUrl(kpass, "bench")).pathname, caPem: kpass.caPem, token: kpass.adminToken },
    };
    const kubectlVersions = Object.fromEntries(await Promise.all(VERSIONS.map(async (v) => [v.version, await kubectlVersionString(v.version)] as const)));

    // ── 1. throughput ──
    const forwards = new Map<string, PortForward>();
    if (ONLY.has("throughput")) log("starting kubectl port-forward (1.33 and 1.29; direct, relay, kpass)");
    for (const { version } of ONLY.has("throughput") ? VERSIONS : []) {
      for (const path of PATHS) {
        const forward = await startPortForward(version, kubeconfigs[path]);
        forwards.set(`${version}/${path}`, forward);
        portForwards.push(forward);
      }
    }
    const cells = new Map<string, Cell>();
    const kinds: { key: string; label: string; protocol: string; raw: boolean; opener: (path: PathName, direction: "up" | "down", bytes: number) => Opener; pid?: (path: PathName) => number }[] = [];
    for (const { version, pf } of ONLY.has("throughput") ? VERSIONS : []) {
      kinds.push({
        key: `pf-${version}`,
        label: `kubectl ${version} port-forward`,
        protocol: pf,
        raw: false,
        opener: (path, direction) => tcpOpener(direction === "up" ? forwards.get(`${version}/${path}`)!.sinkPort : forwards.get(`${version}/${path}`)!.sourcePort),
        pid: (path) => forwards.get(`${version}/${path}`)!.proc.pid,
      });
    }
    if (!flags["no-raw"] && ONLY.has("throughput")) {
      kinds.push({
        key: "raw",
        label: "raw upgraded connection",
        protocol: "TLS, no framing (fixture sinks/sources bytes after the 101)",
        raw: true,
        opener: (path, direction, bytes) => rawOpener(endpoints[path], `bench=${direction === "up" ? "sink" : "source"}&bytes=${bytes}`),
      });
    }
    for (const kind of kinds) for (const path of PATHS) for (const direction of ["up", "down"] as const) {
      cells.set(`${kind.key}/${path}/${direction}`, { key: kind.key, label: kind.label, protocol: kind.protocol, path, direction, transfers: [] });
    }
    // Warm-up: one small transfer per cell (TLS sessions, JIT, kubectl's first stream pair).
    for (const kind of kinds) for (const path of PATHS) for (const direction of ["up", "down"] as const) {
      await transfer(kind.opener(path, direction, 4 * MiB), direction, 4 * MiB, kind.raw);
    }
    const bytes = MIB_PER_ROUND * MiB;
    for (let round = 0; round < ROUNDS && Date.now() < RUN_DEADLINE; round++) {
      for (const kind of kinds) {
        for (const direction of ["up", "down"] as const) {
          for (const path of rotate(PATHS, round)) {
            tracked.kubectl.clear();
            if (kind.pid) tracked.kubectl.add(kind.pid(path));
            const result = await transfer(kind.opener(path, direction, bytes), direction, bytes, kind.raw);
            cells.get(`${kind.key}/${path}/${direction}`)!.transfers.push(result);
            log(`round ${round + 1}/${ROUNDS} ${kind.label} ${direction === "up" ? "upload" : "download"} ${path}: ${fmt(result.bytes / MiB / result.seconds)} MiB/s${result.timedOut ? " (TIMED OUT)" : ""}`);
          }
        }
      }
    }
    tracked.kubectl.clear();
    const pfSessions = await fixtureSessions();
    for (const forward of portForwards) await stopProcess(forward.proc);
    portForwards.length = 0;

    // ── 2. latency ──
    if (ONLY.has("latency")) log("starting exec sessions (kubectl exec -i … cat, client-node Exec, raw echo, local cat)");
    for (const { version } of ONLY.has("latency") ? VERSIONS : []) {
      for (const path of PATHS) {
        sessions.push(await processEcho(`kubectl ${version} exec -i cat`, path, `kubectl ${version}`, [kubectlBinary(version), "--kubeconfig", kubeconfigs[path], "-n", NAMESPACE, "exec", "-i", POD, "--", "cat"], kubectlEnv()));
      }
    }
    if (!flags["no-client-node"] && ONLY.has("latency")) for (const path of PATHS) sessions.push(await clientNodeEcho("client-node Exec cat", path, kubeconfigs[path]));
    if (!flags["no-raw"] && ONLY.has("latency")) for (const path of PATHS) sessions.push(await rawEcho("raw upgraded connection echo", path, endpoints[path]));
    if (ONLY.has("latency")) sessions.push(await processEcho("local cat (pipes only, no network)", "local", "Bun.spawn cat", ["cat"], { PATH: process.env.PATH ?? "/usr/bin:/bin" }));
    for (const session of sessions) {
      try {
        for (let i = 0; i < WARMUP_PINGS; i++) await timedPing(session);
      } catch (error) {
        session.failed = (error as Error).message;
        log(`warm-up failed: ${session.failed}`);
      }
    }
    const execSessions = await fixtureSessions();
    const blocks = sessions.length ? Math.ceil(PINGS / BLOCK_PINGS) : 0;
    for (let block = 0; block < blocks && Date.now() < RUN_DEADLINE; block++) {
      const live = sessions.filter((s) => !s.failed);
      for (const session of rotate(live, block)) {
        tracked.kubectl.clear();
        if (session.pid && session.path !== "local") tracked.kubectl.add(session.pid);
        const samples: number[] = [];
        const before = sampleCpu();
        try {
          for (let i = 0; i < Math.min(BLOCK_PINGS, PINGS - block * BLOCK_PINGS); i++) samples.push(await timedPing(session));
        } catch (error) {
          session.failed = (error as Error).message;
          log(`ping failed: ${session.failed}`);
        }
        addCpu(session.cpu, cpuDelta(before, sampleCpu()));
        session.samples.push(...samples);
        session.blockP50.push(median(samples));
      }
      if ((block + 1) % 5 === 0 || block === blocks - 1) log(`latency: block ${block + 1}/${blocks}`);
    }
    tracked.kubectl.clear();
    for (const session of sessions) await session.close();

    // ── 3. upgrade set-up ──
    const setups: SetupRow[] = [];
    if (ONLY.has("setup")) log("timing upgrade set-up (raw TLS upgrade to 101; kubectl exec -- true)");
    if (!flags["no-raw"] && ONLY.has("setup")) {
      const rows = PATHS.map((path) => ({ key: "raw", label: "raw: TLS connect + upgrade → 101", path, ms: [] as number[] }));
      setups.push(...rows);
      for (let i = 0; i < 10; i++) for (const path of PATHS) await rawSetupMs(endpoints[path]); // warm-up
      for (let i = 0; i < SETUPS && Date.now() < RUN_DEADLINE; i++) {
        for (const row of rotate(rows, i)) row.ms.push(await rawSetupMs(endpoints[row.path]));
      }
    }
    for (const { version } of ONLY.has("setup") ? VERSIONS : []) {
      if (KUBECTL_SETUPS === 0) break;
      const rows = PATHS.map((path) => ({ key: `exec-${version}`, label: `kubectl ${version} exec POD -- true (whole process)`, path, ms: [] as number[] }));
      setups.push(...rows);
      for (const path of PATHS) await kubectlExecTrueMs(version, kubeconfigs[path]); // warm-up
      for (let i = 0; i < KUBECTL_SETUPS && Date.now() < RUN_DEADLINE; i++) {
        for (const row of rotate(rows, i)) row.ms.push(await kubectlExecTrueMs(version, kubeconfigs[row.path]));
      }
    }

    // ── report ──
    const wallSeconds = (performance.now() - t0) / 1000;
    const report = buildReport({ runStarted, wallSeconds, machine, kubectlVersions, cells, sessions, setups, pfSessions, execSessions, busyCores: (machineBusySeconds() - busyAtStart) / wallSeconds });
    mkdirSync(OUT_DIR, { recursive: true });
    const mode = QUICK ? "quick" : "full";
    const stamp = runStarted.toISOString().replace(/[:.]/g, "-");
    writeFileSync(join(OUT_DIR, `streams-${mode}-${stamp}.json`), JSON.stringify(report.json, null, 2));
    writeFileSync(join(OUT_DIR, `streams-latest-${mode}.json`), JSON.stringify(report.json, null, 2));
    writeFileSync(join(OUT_DIR, `streams-latest-${mode}.md`), report.markdown);
    console.log(report.markdown);
    if (report.failures > 0) {
      log(`${report.failures} measurement(s) failed (timed out, lost bytes or a session broke); see ⚠ in the tables`);
      process.exitCode = 1;
    }
    log(`wrote ${join(OUT_DIR, `streams-latest-${mode}.{json,md}`)}; whole run ${fmt(wallSeconds)} s`);
  } finally {
    for (const forward of portForwards) await stopProcess(forward.proc);
    for (const session of sessions) await session.close().catch(() => {});
    if (kpass) {
      await kpass.stop();
      removeDataDir(kpass.dataDir);
    }
    for (const child of children) await stopProcess(child);
    sinkServer.stop(true);
    sourceServer.stop(true);
    rmSync(workDir, { recursive: true, force: true });
  }
}

// ───────────────────────────── report ─────────────────────────────

function buildReport(input: {
  runStarted: Date;
  wallSeconds: number;
  machine: ReturnType<typeof machineInfo>;
  kubectlVersions: Record<string, string>;
  cells: Map<string, Cell>;
  sessions: EchoSession[];
  setups: SetupRow[];
  pfSessions: { kind: string; transport: string; protocol: string; ports: number }[];
  execSessions: { kind: string; transport: string; protocol: string; command?: string[] }[];
  busyCores: number;
}) {
  const { machine, cells, sessions } = input;
  const lines: string[] = [];
  const out = (line = "") => lines.push(line);
  const pct = (cpu: number, seconds: number) => `${fmt((100 * cpu) / seconds)}%`;
  const dir = (d: "up" | "down") => (d === "up" ? "upload" : "download");

  out(`Run ${input.runStarted.toISOString()}, ${QUICK ? "quick" : "full"} mode: ${ROUNDS} interleaved round(s) × ${MIB_PER_ROUND} MiB per transfer, ${PINGS} pings per exec session in blocks of ${BLOCK_PINGS} (+${WARMUP_PINGS} warm-up), ${SETUPS} raw upgrades and ${KUBECTL_SETUPS} \`kubectl exec -- true\` per path; ${machine.cores} cores (${machine.model}), Bun ${machine.bun}, kubectl ${Object.values(input.kubectlVersions).join(" and ")}; load average at start ${machine.loadavgAtStart}; whole run ${fmt(input.wallSeconds)} s, the machine was busy ${fmt(input.busyCores, 2)} cores on average.`);
  out();
  let restSeconds = 0;
  let measuredSeconds = 0;
  for (const cell of cells.values()) for (const t of cell.transfers) {
    restSeconds += t.cpu.rest;
    measuredSeconds += t.seconds;
  }
  const restCores = measuredSeconds > 0 ? restSeconds / measuredSeconds : 0;
  if (restCores > 0.4) {
    out(`⚠ The rest of the machine (other processes, kernel softirq) used ${fmt(restCores, 2)} cores on average during the transfers: other work was running, absolute numbers are unreliable; compare ratios only.`);
    out();
  }
  const negotiated = [...new Set(input.pfSessions.map((s) => `${s.transport} ${s.protocol}`))].join("; ");
  const execNegotiated = [...new Set(input.execSessions.filter((s) => s.kind === "exec" && s.command?.[0] === "cat").map((s) => `${s.transport} ${s.protocol}`))].join("; ");
  out(`Paths: **direct** = kubectl/client → fixture (TLS); **relay** = through a minimal Bun TLS relay (\`--child-relay\` in this file: Bun.listen TLS → Bun.connect TLS, bytes both ways, no HTTP, no auth) — the floor for any tunnel on Bun sockets; **kpass** = through kpass (admin token, cluster proxy URL). The fixture saw port-forward sessions as: ${negotiated || "?"}; exec cat sessions as: ${execNegotiated || "?"}.`);
  out();

  // throughput
  if (cells.size) out("**1. Bulk throughput** (MiB/s = all bytes ÷ all seconds of the cell; each transfer starts with the TCP connect, so it includes stream set-up; CPU in % of one core while the cell's transfers ran)");
  if (cells.size) out();
  if (cells.size) out("| stream | direction | path | MiB | MiB/s | rounds min–max | ÷ direct (of means) | ÷ direct (median of rounds) | kpass | relay | fixture | kubectl | bench | rest | tunnel CPU s/GiB | all CPU s/GiB |");
  if (cells.size) out("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const throughputJson: unknown[] = [];
  const targetsTp: { label: string; ratio: number; medianOfRounds: number; vsRelay: number; cpuCostRatio: number }[] = [];
  /** All busy CPU seconds of the machine per GiB moved in a cell (every process, kernel included). */
  const allCpuPerGiB = (c: Cell) => {
    const cpu = zeroCpu();
    for (const t of c.transfers) addCpu(cpu, t.cpu);
    return ROLES.reduce((a, r) => a + cpu[r], 0) / (c.transfers.reduce((a, t) => a + t.bytes, 0) / MiB / 1024);
  };
  const keys = [...new Set([...cells.values()].map((c) => c.key))];
  const rate = (c: Cell) => c.transfers.reduce((a, t) => a + t.bytes, 0) / MiB / c.transfers.reduce((a, t) => a + t.seconds, 0);
  const perRound = (c: Cell) => c.transfers.map((t) => t.bytes / MiB / t.seconds);
  for (const key of keys) {
    for (const direction of ["up", "down"] as const) {
      const direct = cells.get(`${key}/direct/${direction}`)!;
      for (const path of PATHS) {
        const cell = cells.get(`${key}/${path}/${direction}`)!;
        if (cell.transfers.length === 0) continue;
        const ratio = rate(cell) / rate(direct);
        const roundRatios = perRound(cell).map((r, i) => r / (perRound(direct)[i] ?? NaN));
        const seconds = cell.transfers.reduce((a, t) => a + t.seconds, 0);
        const mib = cell.transfers.reduce((a, t) => a + t.bytes, 0) / MiB;
        const cpu = zeroCpu();
        for (const t of cell.transfers) addCpu(cpu, t.cpu);
        const rounds = perRound(cell);
        const timedOut = cell.transfers.some((t) => t.timedOut);
        const tunnelCpu = path === "kpass" ? cpu.kpass : path === "relay" ? cpu.relay : NaN;
        if (path === "kpass" && key.startsWith("pf-")) {
          const relayCell = cells.get(`${key}/relay/${direction}`)!;
          targetsTp.push({ label: `${cell.label} (${cell.protocol}), ${dir(direction)}`, ratio, medianOfRounds: median(roundRatios), vsRelay: rate(cell) / rate(relayCell), cpuCostRatio: allCpuPerGiB(direct) / allCpuPerGiB(cell) });
        }
        out(
          `| ${cell.label}${key.startsWith("pf-") ? ` (${cell.protocol.split(" ")[0]})` : ""} | ${dir(direction)} | ${path} | ${fmt(mib)}${timedOut ? " ⚠" : ""} | ${fmt(rate(cell))} | ${fmt(Math.min(...rounds))}–${fmt(Math.max(...rounds))} | ${path !== "direct" ? fmt(ratio, 2) : ""} | ${path !== "direct" ? fmt(median(roundRatios), 2) : ""} | ${ROLES.map((r) => pct(cpu[r], seconds)).join(" | ")} | ${path !== "direct" ? fmt(tunnelCpu / (mib / 1024), 2) : ""} | ${fmt(allCpuPerGiB(cell), 2)} |`,
        );
        throughputJson.push({ key, label: cell.label, protocol: cell.protocol, direction, path, mib, seconds, mibPerSecond: rate(cell), rounds, ratioOfMeans: path !== "direct" ? ratio : undefined, medianRoundRatio: path !== "direct" ? median(roundRatios) : undefined, cpuSeconds: cpu, tunnelCpuSecondsPerGiB: path !== "direct" ? tunnelCpu / (mib / 1024) : undefined, allCpuSecondsPerGiB: allCpuPerGiB(cell), timedOut });
      }
    }
  }
  if (cells.size) {
    out();
    out("⚠ = a transfer timed out or lost bytes. kubectl = the kubectl port-forward process of that path; bench = this script (TCP sink/source behind the pod's ports, the client, the raw client); rest = the machine's other busy time (kernel softirq for loopback, other processes). Tunnel CPU s/GiB = the relay's or kpass's CPU seconds per GiB moved; all CPU s/GiB = the whole machine's.");
    out();
  }

  // latency
  if (sessions.length) out("**2. Round-trip latency of 1 byte** (write 1 byte to stdin, wait until it is back on stdout; µs; blocks of pings interleaved across sessions; CPU in µs per round trip)");
  if (sessions.length) out();
  if (sessions.length) out("| session | pings | p50 | p90 | p99 | mean | added p50 | added p99 | added p50, median of blocks | kpass | relay | fixture | kubectl | bench | rest |");
  if (sessions.length) out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const latencyJson: unknown[] = [];
  const targetsLat: { label: string; added: number; addedP99: number; addedVsRelay: number }[] = [];
  const partnerOf = (s: EchoSession, path: PathName) => (s.path === "relay" || s.path === "kpass" ? sessions.find((o) => o.path === path && o.base === s.base) : undefined);
  for (const s of sessions) {
    const direct = partnerOf(s, "direct");
    const p50 = quantile(s.samples, 0.5);
    const p99 = quantile(s.samples, 0.99);
    const added50 = direct ? p50 - quantile(direct.samples, 0.5) : NaN;
    const added99 = direct ? p99 - quantile(direct.samples, 0.99) : NaN;
    const blockDiffs = direct ? s.blockP50.map((v, i) => v - (direct.blockP50[i] ?? NaN)).filter(Number.isFinite) : [];
    const addedBlocks = blockDiffs.length ? median(blockDiffs) : NaN;
    if (s.path === "kpass" && direct && s.client.startsWith("kubectl")) {
      const relay = partnerOf(s, "relay");
      targetsLat.push({ label: s.base, added: added50, addedP99: added99, addedVsRelay: relay ? p50 - quantile(relay.samples, 0.5) : NaN });
    }
    const n = s.samples.length || 1;
    out(
      `| ${s.name}${s.failed ? " ⚠" : ""} | ${s.samples.length} | ${fmt(p50)} | ${fmt(quantile(s.samples, 0.9))} | ${fmt(p99)} | ${fmt(mean(s.samples))} | ${direct ? fmt(added50) : ""} | ${direct ? fmt(added99) : ""} | ${direct ? fmt(addedBlocks) : ""} | ${ROLES.map((r) => fmt((s.cpu[r] * 1e6) / n)).join(" | ")} |`,
    );
    latencyJson.push({ name: s.name, base: s.base, path: s.path, client: s.client, pings: s.samples.length, p50, p90: quantile(s.samples, 0.9), p99, mean: mean(s.samples), min: Math.min(...s.samples), addedP50: direct ? added50 : undefined, addedP99: direct ? added99 : undefined, addedP50MedianOfBlocks: direct ? addedBlocks : undefined, cpuSeconds: s.cpu, failed: s.failed });
  }
  if (sessions.length) out();
  if (sessions.length) out("added = this row − the direct row of the same client. CPU (from /proc/<pid>/stat, 10 ms ticks, so single-digit values are noise): kubectl = that session's kubectl process; bench = this script (it also runs the client-node and raw clients); fixture includes the `cat` processes.");
  if (sessions.some((s) => s.failed)) {
    out();
    for (const s of sessions.filter((x) => x.failed)) out(`- ⚠ ${s.name}: ${s.failed}`);
  }
  if (sessions.length) out();

  // set-up
  const setupJson: unknown[] = [];
  if (input.setups.length) {
    out("**3. Upgrade set-up** (ms; interleaved across paths)");
    out();
    out("| what | path | n | p50 ms | p90 ms | max ms | added p50 ms |");
    out("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (const row of input.setups) {
      const direct = input.setups.find((r) => r.key === row.key && r.path === "direct");
      const added = row.path !== "direct" && direct ? median(row.ms) - median(direct.ms) : NaN;
      out(`| ${row.label} | ${row.path} | ${row.ms.length} | ${fmt(median(row.ms), 2)} | ${fmt(quantile(row.ms, 0.9), 2)} | ${fmt(Math.max(...row.ms), 2)} | ${row.path !== "direct" ? fmt(added, 2) : ""} |`);
      setupJson.push({ key: row.key, label: row.label, path: row.path, n: row.ms.length, p50: median(row.ms), p90: quantile(row.ms, 0.9), max: Math.max(...row.ms), addedP50: row.path !== "direct" ? added : undefined });
    }
    out();
  }

  // targets
  out("**Targets**");
  out();
  out("| target | measured | per-round median | CPU-cost ratio | kpass vs relay (floor) | goal | met |");
  out("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
  for (const t of targetsTp) out(`| ${t.label}: kpass ÷ direct MiB/s | ${fmt(t.ratio, 2)} | ${fmt(t.medianOfRounds, 2)} | ${fmt(t.cpuCostRatio, 2)} | ${fmt(t.vsRelay, 2)}× | ≥ 0.8 | ${t.ratio >= 0.8 ? "yes" : "NO"} |`);
  for (const t of targetsLat) out(`| ${t.label}: added p50 (p99) | ${fmt(t.added)} µs (${fmt(t.addedP99)}) |  |  | ${t.addedVsRelay >= 0 ? "+" : ""}${fmt(t.addedVsRelay)} µs | ≤ 200 µs | ${t.added <= 200 ? "yes" : "NO"} |`);
  out();
  out("CPU-cost ratio = the whole machine's CPU seconds per GiB direct ÷ through kpass: the throughput ratio to expect when the machine's cores are the limit (as here, with client, fixture, kubectl and kpass on 2 cores). kpass vs relay = kpass ÷ the bare Bun TLS relay (throughput) or kpass − relay (latency): what kpass costs beyond any TLS-terminating hop on Bun sockets.");
  out();

  const json = {
    runStarted: input.runStarted.toISOString(),
    mode: QUICK ? "quick" : "full",
    settings: { rounds: ROUNDS, mibPerRound: MIB_PER_ROUND, pings: PINGS, warmupPings: WARMUP_PINGS, blockPings: BLOCK_PINGS, setups: SETUPS, kubectlSetups: KUBECTL_SETUPS },
    machine,
    kubectl: input.kubectlVersions,
    wallSeconds: input.wallSeconds,
    busyCores: input.busyCores,
    restCoresDuringTransfers: restCores,
    negotiated: { portForward: input.pfSessions, exec: input.execSessions },
    throughput: throughputJson,
    latency: latencyJson,
    setup: setupJson,
    targets: { throughput: targetsTp, latency: targetsLat },
  };
  const failures = [...cells.values()].filter((c) => c.transfers.some((t) => t.timedOut)).length + sessions.filter((s) => s.failed).length;
  return { markdown: lines.join("\n") + "\n", json, failures };
}

await main();
process.exit(process.exitCode ?? 0);
