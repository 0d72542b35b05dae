/**
 * "Watches by the thousand": long quiet watches and hundreds of concurrent ones through a real
 * kpass process, and what kpass does when it runs out of file descriptors.
 *
 * 1. A quiet watch (nothing changes) stays open — kubectl 1.27 and 1.33 `get -w`, a raw fetch
 *    from the current resourceVersion (its response head arrives before any event) and
 *    client-node's Watch — and the first event after 30 s still reaches every one of them.
 * 2. 300 concurrent watches (each its own TLS connection, raw HTTP/1.1) to cluster "b" while
 *    cluster "a" and kpass's own API keep answering; one event reaches all 300; closing them gives
 *    back kpass's descriptors.
 * 3. A kpass started under `ulimit -n 200`: watches are opened until new requests fail. A failure
 *    must be an HTTP Status (503/429) or a refused/unaccepted connection, never a request left
 *    without an answer; open watches still get events; kpass serves again once they are closed.
 *
 * Every wait is bounded; every stream is closed and every process started here is killed by pid.
 * Measurements (descriptors and VmRSS per watch, failure modes) are printed with console.log.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import type { Subprocess } from "bun";
import { RESOURCE_TYPES } from "./fixture/cluster/resources.ts";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { clusterManifest, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { startKubectl, type KubectlVersion } from "./harness/kubectl.ts";
import { RawTlsConnection } from "./harness/raw-tls.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = process.execPath;
const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const CONFIGMAPS = RESOURCE_TYPES.find((t) => t.resource === "configmaps")!;
const NAMESPACES = RESOURCE_TYPES.find((t) => t.resource === "namespaces")!;

// -------------------------------------------------------------------------------------------------
// process measurements

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? "0");
}

/** utime + stime of a process, in clock ticks (100 per second on Linux). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

function openFileLimit(pid: number): string {
  return readFileSync(`/proc/${pid}/limits`, "utf8").split("\n").find((l) => l.startsWith("Max open files")) ?? "";
}

// -------------------------------------------------------------------------------------------------
// helpers

interface Kpassish {
  url: string;
  adminToken: string;
  caPem: string;
  pid: number;
}

function createNamespace(fixture: TestCluster, name: string): void {
  if (!fixture.store.get(NAMESPACES, undefined, name)) fixture.store.create(NAMESPACES, { apiVersion: "v1", kind: "Namespace", metadata: { name } });
}

/** Written behind the API: the event can only reach a client through its open watch. */
function createConfigMap(fixture: TestCluster, namespace: string, name: string): void {
  fixture.store.create(CONFIGMAPS, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data: { from: "watches-scale" } });
}

async function registerCluster(kpass: Kpassish, manifest: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${kpass.url}${CLUSTERS}`, {
    method: "POST",
    headers: { authorization: `Bearer ${kpass.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify(manifest),
    tls: { ca: kpass.caPem },
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status !== 201) throw new Error(`registering cluster failed: ${res.status} ${await res.text()}`);
}

/** A GET through kpass with a 5 s abort: the status, or the error that ended it. */
async function boundedGet(kpass: Kpassish, url: string): Promise<{ status: number; body: string } | { error: string }> {
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${kpass.adminToken}` }, tls: { ca: kpass.caPem }, signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  } catch (error) {
    return { error: String(error) };
  }
}

/** Resolves with `promise`, or with `fallback` after `ms`. */
function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() => clearTimeout(timer));
}

/** Runs `task` over `items`, at most `limit` at a time. */
async function bounded<T, R>(items: T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** client-node's Watch in its own process (test/fixture/client-node-quiet-watch.ts). */
function startClientNodeWatch(env: Record<string, string>) {
  const proc: Subprocess<"pipe", "pipe", "pipe"> = Bun.spawn([BUN, join(import.meta.dir, "fixture", "client-node-quiet-watch.ts")], {
    cwd: ROOT,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
  });
  const steps: { step: string; [key: string]: unknown }[] = [];
  let stderr = "";
  void (async () => {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of proc.stdout) {
      partial += decoder.decode(chunk, { stream: true });
      const lines = partial.split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        try {
          steps.push(JSON.parse(line));
        } catch {
          stderr += `[stdout] ${line}\n`;
        }
      }
    }
  })();
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  return {
    steps,
    ended: () => steps.find((s) => s.step === "done" || s.step === "error") ?? (proc.exitCode !== null ? { step: "exited", code: proc.exitCode } : undefined),
    describe: () => `client-node watch: steps ${JSON.stringify(steps)}\nstderr:\n${stderr}`,
    async stop() {
      if (proc.exitCode === null) {
        try {
          proc.stdin.write("stop\n");
          proc.stdin.flush();
          proc.stdin.end();
        } catch {
          // already gone
        }
        await within(proc.exited, 3_000, undefined);
        if (proc.exitCode === null) proc.kill();
      }
      await proc.exited;
    },
  };
}

type Outcome =
  | { kind: "watching" }
  | { kind: "status"; code: number; retryAfter?: string; reason?: string; message?: string }
  | { kind: "connect-failed"; message: string }
  | { kind: "closed-without-answer" }
  | { kind: "no-answer" };

/** One watch on its own TLS connection, written as raw HTTP/1.1. */
class RawWatch {
  private constructor(
    readonly connection: RawTlsConnection,
    readonly outcome: Outcome,
  ) {}

  /**
   * Opens the connection, sends the watch and waits (bounded) for the answer's head. With `hold`,
   * a connection answered with an error Status is kept open (as a keep-alive client keeps it) and
   * returned as `held`.
   */
  static async open(kpass: Kpassish, target: string, options: { connectTimeoutMs?: number; answerTimeoutMs?: number; hold?: boolean } = {}): Promise<{ watch?: RawWatch; held?: RawTlsConnection; outcome: Outcome }> {
    let connection: RawTlsConnection;
    try {
      connection = await RawTlsConnection.open(kpass.url, kpass.caPem, { timeoutMs: options.connectTimeoutMs ?? 10_000 });
    } catch (error) {
      return { outcome: { kind: "connect-failed", message: String((error as Error).message ?? error) } };
    }
    const { host } = new URL(kpass.url);
    connection.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${kpass.adminToken}\r\nAccept: application/json\r\nUser-Agent: watches-scale-test\r\n\r\n`);
    const headEnd = () => connection.raw().indexOf("\r\n\r\n");
    await connection.waitFor(() => headEnd() >= 0, options.answerTimeoutMs ?? 10_000);
    if (headEnd() < 0) {
      const outcome: Outcome = connection.closed ? { kind: "closed-without-answer" } : { kind: "no-answer" };
      connection.close();
      return { outcome };
    }
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(connection.raw().subarray(0, headEnd()).toString("latin1"))?.[1] ?? "0");
    if (status === 200) {
      const watch = new RawWatch(connection, { kind: "watching" });
      return { watch, outcome: watch.outcome };
    }
    const parsed = await connection.responses(1, 5_000);
    const response = parsed.responses[0];
    const body = response?.json() as { reason?: string; message?: string } | undefined;
    const outcome: Outcome = { kind: "status", code: status, retryAfter: response?.header("retry-after"), reason: body?.reason, message: body?.message };
    if (options.hold && !connection.closed) return { held: connection, outcome };
    connection.close();
    return { outcome };
  }

  /** What the watch's body carried so far (chunk framing included; the names are what counts). */
  received(): string {
    const raw = this.connection.raw();
    return raw.subarray(raw.indexOf("\r\n\r\n") + 4).toString("utf8");
  }

  close(): void {
    this.connection.close();
  }
}

/** proxyUrl for any kpass this file started (the harness's wants a full KpassProcess). */
function proxyBase(kpass: Kpassish, cluster: string): string {
  return `${kpass.url}${CLUSTERS}/${cluster}/proxy`;
}

/** The request target of a proxied path on a cluster. */
function proxied(cluster: string, pathAndQuery: string): string {
  return `${CLUSTERS}/${cluster}/proxy${pathAndQuery}`;
}

function freshDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

// -------------------------------------------------------------------------------------------------
// 1. Quiet watches

describe("a quiet watch stays open", () => {
  const TOKEN = `quiet-fixture-${crypto.randomUUID()}`;
  let fixture: TestCluster;
  let kpass: KpassProcess;
  let home: string;

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: TOKEN } });
    createNamespace(fixture, "quiet");
    kpass = await startKpass();
    await registerCluster(kpass, clusterManifest("b", fixture, { token: TOKEN }));
    home = freshDir("kpass-kubectl-home-");
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
    if (home) removeDataDir(home);
  });

  test("kubectl 1.27 / 1.33 get -w, a raw fetch and client-node's Watch stay open 30 s on a quiet namespace, then all see the next event", async () => {
    const kubeconfig = writeKubeconfig(kpass, kpass.adminToken, { b: proxyUrl(kpass, "b") });
    const caFile = join(kpass.dataDir, "quiet-ca.pem");
    writeFileSync(caFile, kpass.caPem);
    expect(fixture.activeStreams()).toBe(0);

    // The raw fetch starts at the current resourceVersion: the cluster sends nothing at all until
    // something changes, so the Response can only resolve on the head kpass relays at once.
    const rv = String(fixture.store.currentResourceVersion());
    const abort = new AbortController();
    const fetched = fetch(`${proxyUrl(kpass, "b")}/api/v1/namespaces/quiet/configmaps?watch=true&resourceVersion=${rv}`, {
      headers: { authorization: `Bearer ${kpass.adminToken}` },
      tls: { ca: kpass.caPem },
      signal: abort.signal,
    });
    const response = await within(fetched, 10_000, "no response head within 10 s" as const);
    if (typeof response === "string") {
      abort.abort();
      throw new Error(`raw fetch watch: ${response}; kpass stderr:\n${kpass.stderr()}`);
    }
    expect(response.status).toBe(200);
    // Nothing was written since: the head came without any event.
    expect(String(fixture.store.currentResourceVersion())).toBe(rv);
    const reader = response.body!.getReader();
    let fetchedText = "";
    let fetchEnded: string | undefined;
    const pump = (async () => {
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return void (fetchEnded = "body ended");
          fetchedText += decoder.decode(value, { stream: true });
        }
      } catch (error) {
        if (!abort.signal.aborted) fetchEnded = `body failed: ${String(error)}`;
      }
    })();

    const kubectls = (["1.27", "1.33"] as KubectlVersion[]).map((v) => startKubectl(v, ["get", "configmaps", "-w", "-n", "quiet"], { kubeconfig, home }));
    const clientNode = startClientNodeWatch({
      HOME: kpass.dataDir,
      KPASS_SERVER: proxyUrl(kpass, "b"),
      KPASS_TOKEN: kpass.adminToken,
      WATCH_NAMESPACE: "quiet",
      WATCH_RESOURCE_VERSION: rv,
      // client-node 2.0.1 aborts a watch that received nothing for 30 s by itself (its private
      // requestTimeoutMs); raised here so that only kpass's behaviour is measured.
      WATCH_INACTIVITY_MS: "120000",
      NODE_EXTRA_CA_CERTS: caFile,
    });
    try {
      await eventually(() => clientNode.steps.find((s) => s.step === "watching") ?? (clientNode.ended() ? Promise.reject(new Error(clientNode.describe())) : undefined), 15_000);
      // Four watches open at the cluster: two kubectl, the raw fetch, client-node.
      await eventually(() => (fixture.activeStreams() === 4 ? true : undefined), 15_000).catch(() => {
        throw new Error(`expected 4 open watches at the cluster, saw ${fixture.activeStreams()}\n${kubectls.map((k) => k.describe()).join("\n")}\n${clientNode.describe()}`);
      });
      expect(String(fixture.store.currentResourceVersion())).toBe(rv);

      // 30 s of silence. Every watcher must still be there at every second of it.
      const quietUntil = Date.now() + 30_000;
      while (Date.now() < quietUntil) {
        await Bun.sleep(1_000);
        for (const k of kubectls) if (k.exited()) throw new Error(`died during the quiet period: ${k.describe()}`);
        if (clientNode.ended()) throw new Error(`client-node watch ended during the quiet period: ${clientNode.describe()}`);
        if (fetchEnded) throw new Error(`raw fetch watch ended during the quiet period: ${fetchEnded}`);
      }
      expect(fixture.activeStreams()).toBe(4);
      expect(String(fixture.store.currentResourceVersion())).toBe(rv);
      expect(fetchedText).toBe("");

      const name = `after-quiet-${Date.now()}`;
      createConfigMap(fixture, "quiet", name);
      for (const k of kubectls) await k.waitForLine((l) => l.startsWith(name), 10_000);
      await eventually(() => (fetchedText.includes(`"name":"${name}"`) ? true : undefined), 10_000);
      expect(JSON.parse(fetchedText.trim().split("\n")[0]!)).toMatchObject({ type: "ADDED", object: { metadata: { name, namespace: "quiet" } } });
      const event = await eventually(() => clientNode.steps.find((s) => s.step === "event"), 10_000).catch(() => {
        throw new Error(`client-node saw no event: ${clientNode.describe()}`);
      });
      expect(event).toMatchObject({ step: "event", type: "ADDED", name });
      for (const k of kubectls) expect(k.exited()).toBe(false);
      expect(clientNode.ended()).toBeUndefined();
    } finally {
      abort.abort();
      await within(pump, 3_000, undefined);
      for (const k of kubectls) await k.stop();
      await clientNode.stop();
    }
    await eventually(() => (fixture.activeStreams() === 0 ? true : undefined), 5_000);
  }, 120_000);
});

// -------------------------------------------------------------------------------------------------
// 2. 300 concurrent watches

describe("300 concurrent watches through one kpass", () => {
  const TOKEN_A = `scale-a-${crypto.randomUUID()}`;
  const TOKEN_B = `scale-b-${crypto.randomUUID()}`;
  const WATCHES = 300;
  let clusterA: TestCluster;
  let clusterB: TestCluster;
  let kpass: KpassProcess;

  beforeAll(async () => {
    clusterA = await startTestCluster({ credential: { type: "token", token: TOKEN_A } });
    clusterB = await startTestCluster({ credential: { type: "token", token: TOKEN_B }, recordRequests: false });
    createNamespace(clusterB, "scale");
    kpass = await startKpass();
    await registerCluster(kpass, clusterManifest("a", clusterA, { token: TOKEN_A }));
    await registerCluster(kpass, clusterManifest("b", clusterB, { token: TOKEN_B }));
  });

  afterAll(async () => {
    await kpass?.stop();
    await clusterA?.stop();
    await clusterB?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
  });

  test("other clusters and kpass's API answer meanwhile, one event reaches all 300, and closing them gives the descriptors back", async () => {
    // Warm up both paths (pools, probes), so the baseline holds what an idle kpass keeps open.
    for (const url of [`${proxyUrl(kpass, "a")}/api/v1/namespaces`, `${proxyUrl(kpass, "b")}/api/v1/namespaces`, `${kpass.url}${CLUSTERS}`]) {
      const warm = await boundedGet(kpass, url);
      expect(warm).toMatchObject({ status: 200 });
    }
    await Bun.sleep(500);
    const fdBefore = fdCount(kpass.pid);
    const rssBefore = rssKiB(kpass.pid);

    const rv = String(clusterB.store.currentResourceVersion());
    const path = `/api/v1/namespaces/scale/configmaps?watch=true&resourceVersion=${rv}`;
    const watches: RawWatch[] = [];
    try {
      const opened = await bounded(Array.from({ length: WATCHES }, (_, i) => i), 16, async () => {
        const result = await RawWatch.open(kpass, proxied("b", path));
        if (result.watch) watches.push(result.watch);
        return result.outcome;
      });
      const notWatching = opened.filter((o) => o.kind !== "watching");
      expect(notWatching).toEqual([]);
      expect(watches).toHaveLength(WATCHES);
      await eventually(() => (clusterB.activeStreams() === WATCHES ? true : undefined), 20_000).catch(() => {
        throw new Error(`cluster b holds ${clusterB.activeStreams()} watches, expected ${WATCHES}`);
      });

      // With 300 watches open: another cluster and kpass's own API still answer (5 s abort each).
      const [viaA, api] = await Promise.all([boundedGet(kpass, `${proxyUrl(kpass, "a")}/api/v1/namespaces/default/configmaps`), boundedGet(kpass, `${kpass.url}${CLUSTERS}`)]);
      expect(viaA).toMatchObject({ status: 200 });
      expect(JSON.parse((viaA as { body: string }).body).items.map((i: { metadata: { name: string } }) => i.metadata.name)).toContain("app-config");
      expect(api).toMatchObject({ status: 200 });
      expect(JSON.parse((api as { body: string }).body).items.map((i: { metadata: { name: string } }) => i.metadata.name).sort()).toEqual(["a", "b"]);

      const fdDuring = fdCount(kpass.pid);
      const rssDuring = rssKiB(kpass.pid);
      console.log(
        `[measure] 300 watches: kpass fds ${fdBefore} → ${fdDuring} (${((fdDuring - fdBefore) / WATCHES).toFixed(2)} per watch); ` +
          `VmRSS ${(rssBefore / 1024).toFixed(1)} → ${(rssDuring / 1024).toFixed(1)} MiB (${((rssDuring - rssBefore) / WATCHES).toFixed(1)} KiB per watch)`,
      );
      // Two descriptors per proxied stream (client + cluster side), nothing more.
      expect(fdDuring - fdBefore).toBeGreaterThanOrEqual(2 * WATCHES - 10);
      expect(fdDuring - fdBefore).toBeLessThanOrEqual(2 * WATCHES + 10);

      // One event at cluster b reaches every one of the 300 watches.
      const name = `scale-event-${Date.now()}`;
      createConfigMap(clusterB, "scale", name);
      const reached = () => watches.filter((w) => w.received().includes(`"name":"${name}"`)).length;
      await eventually(() => (reached() === WATCHES ? true : undefined), 20_000).catch(() => undefined);
      expect(reached()).toBe(WATCHES);
      expect(watches.filter((w) => w.connection.closed).length).toBe(0);
    } finally {
      for (const w of watches) w.close();
    }
    await eventually(() => (clusterB.activeStreams() === 0 ? true : undefined), 20_000).catch(() => {
      throw new Error(`cluster b still holds ${clusterB.activeStreams()} watches after all clients closed`);
    });
    const fdAfter = await eventually(() => {
      const n = fdCount(kpass.pid);
      return n <= fdBefore + 10 ? n : undefined;
    }, 20_000).catch(() => {
      throw new Error(`kpass holds ${fdCount(kpass.pid)} descriptors after closing all watches, ${fdBefore} before`);
    });
    console.log(`[measure] after closing: kpass fds ${fdAfter} (before ${fdBefore}); VmRSS ${(rssKiB(kpass.pid) / 1024).toFixed(1)} MiB`);
    // And it still serves.
    expect(await boundedGet(kpass, `${proxyUrl(kpass, "b")}/api/v1/namespaces`)).toMatchObject({ status: 200 });
  }, 150_000);
});

// -------------------------------------------------------------------------------------------------
// 3. Out of file descriptors

interface LimitedKpass extends Kpassish {
  dataDir: string;
  exited(): boolean;
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts kpass like startKpass does, but under `ulimit -n <limit>` (soft and hard). */
async function startLimitedKpass(limit: number): Promise<LimitedKpass> {
  const dataDir = freshDir("kpass-test-");
  const command = [BUN, join(ROOT, "src/cli/main.ts"), "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--probe-interval", "2s", "--upstream-timeout", "5s"];
  const quoted = command.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const proc = Bun.spawn(["bash", "-c", `ulimit -n ${limit} && exec ${quoted}`], { stdout: "pipe", stderr: "pipe", cwd: ROOT });
  process.on("exit", () => proc.kill());
  let stderrText = "";
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + 15_000;
  let url: string | undefined;
  while (!url) {
    if (Date.now() > deadline) {
      proc.kill();
      throw new Error(`kpass did not start: ${stderrText}`);
    }
    const result = await within(reader.read(), Math.max(1, deadline - Date.now()), undefined);
    if (!result) continue;
    if (result.done) throw new Error(`kpass exited: ${stderrText}`);
    stderrText += decoder.decode(result.value);
    if (/admin kubeconfig: \S+\n/.test(stderrText)) url = /listening on (https:\/\/\S+)/.exec(stderrText)?.[1];
  }
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      stderrText += decoder.decode(value);
    }
  })();
  const config = parse(readFileSync(join(dataDir, "admin.kubeconfig"), "utf8")) as { users: { user: { token: string } }[]; clusters: { cluster: { "certificate-authority-data": string } }[] };
  return {
    url,
    dataDir,
    pid: proc.pid,
    adminToken: config.users[0]!.user.token,
    caPem: Buffer.from(config.clusters[0]!.cluster["certificate-authority-data"], "base64").toString("utf8"),
    exited: () => proc.exitCode !== null || proc.signalCode !== null,
    stderr: () => stderrText,
    async stop() {
      if (proc.exitCode === null) proc.kill();
      await proc.exited;
    },
  };
}

describe("out of file descriptors (ulimit -n 200)", () => {
  const TOKEN = `fd-fixture-${crypto.randomUUID()}`;
  const LIMIT = 200;
  let fixture: TestCluster;
  let kpass: LimitedKpass;
  /** The Status answers of the first test's phase A (kpass out of descriptors toward the cluster). */
  const closedFailures: Outcome[] = [];

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: TOKEN }, recordRequests: false });
    createNamespace(fixture, "fd");
    kpass = await startLimitedKpass(LIMIT);
    await registerCluster(kpass, clusterManifest("b", fixture, { token: TOKEN }));
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
  });

  test("new requests fail with a Status or a refused connection, open watches keep their events, and kpass serves again afterwards", async () => {
    expect(openFileLimit(kpass.pid)).toMatch(new RegExp(`^Max open files\\s+${LIMIT}\\s+${LIMIT}\\s`));
    expect(await boundedGet(kpass, `${proxyBase(kpass, "b")}/api/v1/namespaces`)).toMatchObject({ status: 200 });
    const fdBefore = fdCount(kpass.pid);
    const exhaustionStarted = new Date().toISOString().replace(/\.\d+Z$/, "Z");

    const rv = String(fixture.store.currentResourceVersion());
    const path = `/api/v1/namespaces/fd/configmaps?watch=true&resourceVersion=${rv}`;
    const watches: RawWatch[] = [];
    const held: RawTlsConnection[] = [];
    const pending: Promise<unknown>[] = [];
    /** Phase A: the client closes each failed connection (kubectl retrying on a new one). */
    closedFailures.length = 0;
    /** Phase B: the client keeps each failed connection (keep-alive), so kpass's last descriptor stays taken. */
    const heldFailures: Outcome[] = [];
    const acceptable = (failure: Outcome) => {
      if (failure.kind === "status") {
        expect([429, 503]).toContain(failure.code);
        expect(failure.reason).toMatch(/^(ServiceUnavailable|TooManyRequests)$/);
      } else {
        // A connection kpass did not take (refused, or never accepted: the TLS handshake gets no
        // answer within the client's 5 s connect bound). Never "no-answer": a request kpass took
        // and left without a response.
        expect(failure.kind).toBe("connect-failed");
      }
    };
    try {
      // Phase A, one at a time, until three in a row fail (bounded: at most LIMIT attempts).
      let consecutive = 0;
      for (let attempt = 0; attempt < LIMIT && consecutive < 3; attempt++) {
        const result = await RawWatch.open(kpass, proxied("b", path), { connectTimeoutMs: 5_000, answerTimeoutMs: 10_000 });
        if (result.watch) {
          watches.push(result.watch);
          consecutive = 0;
        } else {
          closedFailures.push(result.outcome);
          consecutive++;
        }
      }
      const fdAtLimit = fdCount(kpass.pid);

      // Phase B: failures held open until two connections in a row are not taken (at most 6 tries).
      consecutive = 0;
      for (let attempt = 0; attempt < 6 && consecutive < 2; attempt++) {
        const result = await RawWatch.open(kpass, proxied("b", path), { connectTimeoutMs: 5_000, answerTimeoutMs: 10_000, hold: true });
        if (result.watch) watches.push(result.watch);
        if (result.held) held.push(result.held);
        if (result.outcome.kind !== "watching") heldFailures.push(result.outcome);
        consecutive = result.outcome.kind === "connect-failed" ? consecutive + 1 : 0;
      }
      const fdExhausted = fdCount(kpass.pid);
      // CPU while a client waits in the listen backlog that kpass cannot accept.
      pending.push(RawTlsConnection.open(kpass.url, kpass.caPem, { timeoutMs: 4_000 }).then((c) => c.close(), () => undefined));
      const ticks = cpuTicks(kpass.pid);
      await Bun.sleep(3_000);
      const cpuPercent = (cpuTicks(kpass.pid) - ticks) / 3; // 100 ticks per second
      // kpass's own API while out of descriptors (needs no cluster connection).
      const apiWhileExhausted = await RawWatch.open(kpass, CLUSTERS, { connectTimeoutMs: 5_000, answerTimeoutMs: 10_000 });
      apiWhileExhausted.watch?.close();
      console.log(
        `[measure] ulimit -n ${LIMIT}: kpass had ${fdBefore} fds idle; ${watches.length} watches opened (${((fdAtLimit - fdBefore) / watches.length).toFixed(2)} fds each); ` +
          `fds at the limit ${fdAtLimit}, with held failures ${fdExhausted}; kpass CPU with a connection in its backlog ${cpuPercent.toFixed(0)}%\n` +
          `  failures, client closing them: ${JSON.stringify(closedFailures)}\n` +
          `  failures, client holding them: ${JSON.stringify(heldFailures)}\n` +
          `  a further GET of kpass's API (clusters) meanwhile: ${JSON.stringify(apiWhileExhausted.outcome)}; kpass alive: ${!kpass.exited()}`,
      );

      expect(kpass.exited()).toBe(false);
      expect(watches.length).toBeGreaterThan(10);
      expect(closedFailures.length).toBeGreaterThan(0);
      for (const failure of [...closedFailures, ...heldFailures, apiWhileExhausted.outcome]) if (failure.kind !== "watching") acceptable(failure);

      // The watches already open are unharmed: an event written now reaches every one.
      const name = `fd-event-${Date.now()}`;
      createConfigMap(fixture, "fd", name);
      const reached = () => watches.filter((w) => w.received().includes(`"name":"${name}"`)).length;
      await eventually(() => (reached() === watches.length ? true : undefined), 15_000).catch(() => undefined);
      expect(reached()).toBe(watches.length);
      expect(watches.filter((w) => w.connection.closed).length).toBe(0);
    } finally {
      for (const w of watches) w.close();
      for (const c of held) c.close();
      await Promise.all(pending);
    }

    // Once they are closed, kpass serves again: its API, the proxy, and a new watch with events.
    await eventually(() => (fixture.activeStreams() === 0 ? true : undefined), 20_000).catch(() => {
      throw new Error(`the cluster still holds ${fixture.activeStreams()} watches after all clients closed`);
    });
    expect(kpass.exited()).toBe(false);
    const api = await eventually(async () => {
      const r = await boundedGet(kpass, `${kpass.url}${CLUSTERS}`);
      return "status" in r && r.status === 200 ? r : undefined;
    }, 20_000).catch(() => {
      throw new Error(`kpass's API does not answer after the watches were closed; stderr:\n${kpass.stderr()}`);
    });
    expect(api.status).toBe(200);
    const ready = (JSON.parse(api.body) as { items: { metadata: { name: string }; status?: { conditions?: { type: string }[] } }[] }).items
      .find((c) => c.metadata.name === "b")?.status?.conditions?.find((c) => c.type === "Ready");
    console.log(`[measure] ulimit -n ${LIMIT}: cluster b's Ready condition right after recovery: ${JSON.stringify(ready)} (exhaustion started ${exhaustionStarted})`);
    await eventually(async () => {
      const r = await boundedGet(kpass, `${proxyBase(kpass, "b")}/api/v1/namespaces`);
      return "status" in r && r.status === 200 ? r : undefined;
    }, 20_000);
    const again = await RawWatch.open(kpass, proxied("b", `/api/v1/namespaces/fd/configmaps?watch=true&resourceVersion=${fixture.store.currentResourceVersion()}`));
    expect(again.outcome).toEqual({ kind: "watching" });
    try {
      const name = `fd-recovered-${Date.now()}`;
      createConfigMap(fixture, "fd", name);
      await eventually(() => (again.watch!.received().includes(`"name":"${name}"`) ? true : undefined), 10_000);
    } finally {
      again.watch?.close();
    }
    const fdAfter = await eventually(() => {
      const n = fdCount(kpass.pid);
      return n <= fdBefore + 10 ? n : undefined;
    }, 20_000).catch(() => {
      throw new Error(`kpass holds ${fdCount(kpass.pid)} descriptors after recovering, ${fdBefore} before`);
    });
    console.log(`[measure] ulimit -n ${LIMIT}: kpass fds after recovery ${fdAfter}; kpass stderr:\n${kpass.stderr()}`);
  }, 170_000);

  // src/proxy/forward.ts maps EMFILE/ENFILE to a 503 naming kpass's own descriptor shortage, with
  // Retry-After. The answers of the test above must be that one: the cluster is not at fault.
  test("a 503 caused by kpass's own descriptor shortage says so and carries Retry-After", () => {
    const statuses = closedFailures.filter((f): f is Extract<Outcome, { kind: "status" }> => f.kind === "status");
    expect(statuses.length).toBeGreaterThan(0);
    for (const status of statuses) {
      expect(status.message).toContain("out of file descriptors");
      expect(status.retryAfter).toBeDefined();
    }
  });
});
