/**
 * Revoking a pass ends what it holds open: deleting, expiring, re-creating or editing a Pass ends
 * its watches (through the cluster proxy and on kpass's own API) and its exec tunnels, and the old
 * token is refused afterwards. Also: the per-pass bound on open streams (--max-streams-per-pass),
 * and kpass's RBAC escalation check for clusters that do not impersonate.
 *
 * Real kpass processes, real kubectl (1.27: SPDY exec, 1.33: WebSocket exec), fixture clusters;
 * every wait is bounded and every process started here is tracked and killed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { connect, type AddressInfo } from "node:net";
import { join } from "node:path";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { createStreamUpgradeHandler, type StreamUpgradeFixture } from "./fixture/streams/index.ts";
import { clusterManifest, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { runKubectl, startKubectl, type KubectlVersion } from "./harness/kubectl.ts";

const VERSIONS: KubectlVersion[] = ["1.27", "1.33"];
const PASSES = "/apis/cluster.kpass.dev/v1beta1/passes";
const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const MERGE = { headers: { "content-type": "application/merge-patch+json" } };
/** Bound on "the stream has ended" (kpass promises ~0.5 s; this is only the test's patience). */
const ENDS_WITHIN_MS = 5000;
/** Bound on a line from a background kubectl (its start-up and discovery included). */
const LINE_WITHIN_MS = 15_000;

interface StatusBody {
  kind: string;
  code: number;
  reason: string;
  message: string;
}

const statusOf = async (response: Response) => (await response.json()) as StatusBody;

let cluster: TestCluster;
let streams: StreamUpgradeFixture;
let kpass: KpassProcess;

// -------------------------------------------------------------------------------------------------
// processes started here: every one is tracked and killed, whatever happens

const started = new Set<Subprocess>();
process.on("exit", () => {
  for (const proc of started) proc.kill();
});

async function killAll(): Promise<void> {
  const procs = [...started];
  for (const proc of procs) if (proc.exitCode === null && proc.signalCode === null) proc.kill();
  await Promise.all(procs.map((p) => p.exited));
}

/** A background kubectl (get -w, exec -i, ...) that killAll() ends whatever the test did. */
function startTrackedKubectl(version: KubectlVersion, kubeconfig: string, args: string[], options: { stdin?: "ignore" | "pipe" } = {}) {
  const kubectl = startKubectl(version, args, { kubeconfig, stdin: options.stdin });
  started.add(kubectl.proc);
  void kubectl.proc.exited.then(() => started.delete(kubectl.proc));
  return kubectl;
}

// -------------------------------------------------------------------------------------------------
// helpers

function passManifest(name: string, spec: Record<string, unknown>) {
  return { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec };
}

/** Creates a pass (deleting a leftover of the same name first); returns its token and uid. */
async function createPass(k: KpassProcess, name: string, spec: Record<string, unknown>): Promise<{ token: string; uid: string }> {
  await k.api("DELETE", `${PASSES}/${name}`);
  const response = await k.api("POST", PASSES, passManifest(name, spec));
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(201);
  return { token: body.status.token as string, uid: body.metadata.uid as string };
}

const viewSpec = (user: string, extra: Record<string, unknown> = {}) => ({ user, clusters: { names: ["c1"] }, roles: ["view"], ...extra });

function kubeconfigFor(k: KpassProcess, token: string): string {
  return writeKubeconfig(k, token, { c1: proxyUrl(k, "c1") });
}

/** Waits until the fixture holds exactly `n` open watch streams. */
async function streamsAre(n: number, timeoutMs = ENDS_WITHIN_MS): Promise<void> {
  try {
    await eventually(() => (cluster.activeStreams() === n ? true : undefined), timeoutMs);
  } catch {
    throw new Error(`fixture holds ${cluster.activeStreams()} open streams, expected ${n}`);
  }
}

/** Starts `kubectl get configmaps -w` and waits until its watch is open at the cluster. */
async function startWatch(version: KubectlVersion, kubeconfig: string, expectedStreams: number) {
  const watcher = startTrackedKubectl(version, kubeconfig, ["get", "configmaps", "-n", "default", "-w"]);
  await watcher.waitForLine((l) => l.startsWith("app-config"), LINE_WITHIN_MS);
  await streamsAre(expectedStreams, 10_000);
  return watcher;
}

function kubectlGet(version: KubectlVersion, kubeconfig: string) {
  return runKubectl(version, ["--kubeconfig", kubeconfig, "get", "configmaps", "-n", "default", "-o", "name"], { timeoutMs: 30_000 });
}

/** A raw request through kpass's proxy for cluster c1 of `k`. */
function viaProxy(k: KpassProcess, token: string, pathAndQuery: string, init: { method?: string; body?: unknown; signal?: AbortSignal; contentType?: string; cluster?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (init.body !== undefined) headers["content-type"] = init.contentType ?? "application/json";
  return fetch(`${proxyUrl(k, init.cluster ?? "c1")}${pathAndQuery}`, {
    method: init.method ?? "GET",
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: init.signal,
    tls: { ca: k.caPem },
  } as RequestInit);
}

beforeAll(async () => {
  streams = createStreamUpgradeHandler();
  cluster = await startTestCluster({ credential: { type: "token", token: "member-token" }, upgrade: streams.handler });
  kpass = await startKpass();
  // Default impersonation: the cluster sees kpass's own credential only.
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("c1", cluster, { token: "member-token" }))).status).toBe(201);
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("c1-user", cluster, { token: "member-token" }, { impersonation: "user" }))).status).toBe(201);
});

afterEach(async () => {
  await killAll();
});

afterAll(async () => {
  await killAll();
  await kpass?.stop();
  await cluster?.stop();
  await streams?.close();
  if (kpass) removeDataDir(kpass.dataDir);
});

// -------------------------------------------------------------------------------------------------
// 1–3: watches through the cluster proxy

for (const version of VERSIONS) {
  describe(`kubectl ${version} get configmaps -w through a pass`, () => {
    test("deleting the pass ends its watch (and only its watch); the token is then 401", async () => {
      await streamsAre(0);
      const bob = await createPass(kpass, "bob", viewSpec("bob"));
      const carol = await createPass(kpass, "carol", viewSpec("carol"));
      const bobConfig = kubeconfigFor(kpass, bob.token);
      const bobWatch = await startWatch(version, bobConfig, 1);
      const carolWatch = await startWatch(version, kubeconfigFor(kpass, carol.token), 2);

      expect((await kpass.api("DELETE", `${PASSES}/bob`)).status).toBe(200);
      await bobWatch.waitForExit(ENDS_WITHIN_MS);
      await streamsAre(1);
      // carol's pass was not touched: her watch stays open and still sees new objects.
      expect(carolWatch.exited()).toBe(false);
      const created = await viaProxy(kpass, kpass.adminToken, "/api/v1/namespaces/default/configmaps", { method: "POST", body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `after-bob-${version.replace(".", "")}` } } });
      expect(created.status).toBe(201);
      await carolWatch.waitForLine((l) => l.startsWith(`after-bob-${version.replace(".", "")}`), 5000);
      expect(carolWatch.exited()).toBe(false);

      const again = await kubectlGet(version, bobConfig);
      expect(again.exitCode).not.toBe(0);
      expect(again.stderr).toMatch(/Unauthorized|provide credentials/);
      const raw = await viaProxy(kpass, bob.token, "/api/v1/namespaces/default/configmaps?watch=true");
      expect(raw.status).toBe(401);
      expect((await statusOf(raw)).message).toContain('pass "bob" has been revoked');
      await carolWatch.stop();
      await streamsAre(0);
      await kpass.api("DELETE", `${PASSES}/carol`);
    }, 60_000);

    for (const how of ["PATCH", "PUT"] as const) {
      test(`editing the pass (${how} spec.roles to []) ends its watch; a new watch is refused, and works again once view is back`, async () => {
        await streamsAre(0);
        const bob = await createPass(kpass, "bob", viewSpec("bob"));
        const config = kubeconfigFor(kpass, bob.token);
        const watcher = await startWatch(version, config, 1);

        let edited: Response;
        if (how === "PATCH") {
          edited = await kpass.api("PATCH", `${PASSES}/bob`, { spec: { roles: [] } }, MERGE);
        } else {
          const current = await (await kpass.api("GET", `${PASSES}/bob`)).json();
          edited = await kpass.api("PUT", `${PASSES}/bob`, { ...current, spec: { ...current.spec, roles: [] } });
        }
        expect(edited.status).toBe(200);
        await watcher.waitForExit(ENDS_WITHIN_MS);
        await streamsAre(0);

        // The pass exists, so the same token authenticates, but may no longer watch.
        const raw = await viaProxy(kpass, bob.token, "/api/v1/namespaces/default/configmaps?watch=true");
        expect(raw.status).toBe(403);
        const refused = await kubectlGet(version, config);
        expect(refused.exitCode).not.toBe(0);
        expect(refused.stderr).toContain("Forbidden");

        expect((await kpass.api("PATCH", `${PASSES}/bob`, { spec: { roles: ["view"] } }, MERGE)).status).toBe(200);
        const back = await kubectlGet(version, config);
        expect(back.exitCode, back.stderr).toBe(0);
        expect(back.stdout).toContain("configmap/app-config");
        await kpass.api("DELETE", `${PASSES}/bob`);
      }, 60_000);
    }

    test("a pass that expires ends its watch at expiry; the token is then 401 (expired)", async () => {
      await streamsAre(0);
      // Expiry set at creation: an edit would end the watch by itself, before expiry.
      const expiresAtMs = Date.now() + 5000;
      const expiresAt = new Date(expiresAtMs).toISOString();
      const bob = await createPass(kpass, "bob", viewSpec("bob", { expiresAt }));
      const config = kubeconfigFor(kpass, bob.token);
      const watcher = await startWatch(version, config, 1);
      if (Date.now() < expiresAtMs - 500) {
        await Bun.sleep(200);
        expect(watcher.exited()).toBe(false);
      }
      await watcher.waitForExit(Math.max(0, expiresAtMs - Date.now()) + ENDS_WITHIN_MS);
      await streamsAre(0);
      // Ended because of expiry, not earlier (the same clock; ISO strings keep milliseconds).
      expect(watcher.exitedAt()!).toBeGreaterThanOrEqual(expiresAtMs - 50);

      const raw = await viaProxy(kpass, bob.token, "/api/v1/namespaces/default/configmaps");
      expect(raw.status).toBe(401);
      expect((await statusOf(raw)).message).toContain("expired");
      const again = await kubectlGet(version, config);
      expect(again.exitCode).not.toBe(0);
      expect(again.stderr).toMatch(/Unauthorized|provide credentials/);
      await kpass.api("DELETE", `${PASSES}/bob`);
    }, 60_000);

    test("re-creating the pass (same name, new uid): the old watch is gone and the old token is 401, the new one works", async () => {
      await streamsAre(0);
      const first = await createPass(kpass, "bob", viewSpec("bob"));
      const oldConfig = kubeconfigFor(kpass, first.token);
      const watcher = await startWatch(version, oldConfig, 1);

      expect((await kpass.api("DELETE", `${PASSES}/bob`)).status).toBe(200);
      const created = await kpass.api("POST", PASSES, passManifest("bob", viewSpec("bob")));
      expect(created.status).toBe(201);
      const second = await created.json();
      expect(second.metadata.uid).not.toBe(first.uid);

      await watcher.waitForExit(ENDS_WITHIN_MS);
      await streamsAre(0);
      const old = await kubectlGet(version, oldConfig);
      expect(old.exitCode).not.toBe(0);
      expect(old.stderr).toMatch(/Unauthorized|provide credentials/);
      const oldRaw = await viaProxy(kpass, first.token, "/api/v1/namespaces/default/configmaps?watch=true");
      expect(oldRaw.status).toBe(401);
      expect((await statusOf(oldRaw)).message).toContain('pass "bob" has been revoked');

      const fresh = await kubectlGet(version, kubeconfigFor(kpass, second.status.token));
      expect(fresh.exitCode, fresh.stderr).toBe(0);
      expect(fresh.stdout).toContain("configmap/app-config");
      await kpass.api("DELETE", `${PASSES}/bob`);
    }, 60_000);
  });
}

// -------------------------------------------------------------------------------------------------
// 4: exec tunnels

for (const version of VERSIONS) {
  test(`kubectl ${version} exec -i web-0 -- cat (${version === "1.27" ? "SPDY" : "WebSocket"}) ends when its pass is deleted; a new exec is 401`, async () => {
    await eventually(() => (cluster.activeUpgrades() === 0 ? true : undefined), ENDS_WITHIN_MS);
    const execer = await createPass(kpass, "execer", { user: "execer", clusters: { names: ["c1"] }, roles: ["edit"] });
    const config = kubeconfigFor(kpass, execer.token);
    const session = startTrackedKubectl(version, config, ["exec", "-i", "-n", "default", "web-0", "--", "cat"], { stdin: "pipe" });
    // The tunnel works: what goes in comes back (stdin stays open, so cat and kubectl keep running).
    session.write("ping-1\n");
    await session.waitForLine((l) => l === "ping-1", LINE_WITHIN_MS);
    expect(cluster.activeUpgrades()).toBe(1);
    const record = streams.sessions.last("exec");
    expect(record?.open).toBe(true);
    expect(record?.transport).toBe(version === "1.27" ? "spdy" : "websocket");

    expect((await kpass.api("DELETE", `${PASSES}/execer`)).status).toBe(200);
    const code = await session.waitForExit(ENDS_WITHIN_MS);
    console.error(`kubectl ${version} exec after revocation: exit ${code}, stderr: ${session.stderr().trim()}`);
    await eventually(() => (cluster.activeUpgrades() === 0 ? true : undefined), ENDS_WITHIN_MS);
    await eventually(() => (record?.open === false ? true : undefined), ENDS_WITHIN_MS);

    const again = await runKubectl(version, ["--kubeconfig", config, "exec", "-n", "default", "web-0", "--", "true"], { timeoutMs: 30_000 });
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr).toMatch(/Unauthorized|provide credentials/);
  }, 60_000);
}

test("editing an exec pass (roles [] ) ends its open exec tunnel too", async () => {
  await eventually(() => (cluster.activeUpgrades() === 0 ? true : undefined), ENDS_WITHIN_MS);
  const execer = await createPass(kpass, "execer2", { user: "execer2", clusters: { names: ["c1"] }, roles: ["edit"] });
  const session = startTrackedKubectl("1.33", kubeconfigFor(kpass, execer.token), ["exec", "-i", "-n", "default", "web-0", "--", "cat"], { stdin: "pipe" });
  session.write("ping-2\n");
  await session.waitForLine((l) => l === "ping-2", LINE_WITHIN_MS);
  expect((await kpass.api("PATCH", `${PASSES}/execer2`, { spec: { roles: [] } }, MERGE)).status).toBe(200);
  await session.waitForExit(ENDS_WITHIN_MS);
  await eventually(() => (cluster.activeUpgrades() === 0 ? true : undefined), ENDS_WITHIN_MS);
  await kpass.api("DELETE", `${PASSES}/execer2`);
}, 60_000);

for (const version of VERSIONS) {
  test(`kubectl ${version} port-forward ends when its pass is deleted`, async () => {
    await eventually(() => (cluster.activeUpgrades() === 0 ? true : undefined), ENDS_WITHIN_MS);
    const forwarder = await createPass(kpass, "forwarder", { user: "forwarder", clusters: { names: ["c1"] }, roles: ["edit"] });
    const session = startTrackedKubectl(version, kubeconfigFor(kpass, forwarder.token), ["port-forward", "-n", "default", "pod/web-0", ":80", "--address", "127.0.0.1"]);
    const line = await session.waitForLine((l) => /Forwarding from 127\.0\.0\.1:\d+ -> 80/.test(l), LINE_WITHIN_MS);
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(line.text)![1]);
    // One echo through the forward: the tunnel to the pod is up.
    const echoed = await new Promise<string>((resolve, reject) => {
      let data = "";
      const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => socket.end("through-the-tunnel"));
      const timer = setTimeout(() => (socket.destroy(), reject(new Error(`echo timed out: ${session.describe()}`))), 15_000);
      socket.on("data", (chunk: Buffer) => (data += chunk.toString()));
      socket.on("end", () => (clearTimeout(timer), socket.destroy(), resolve(data)));
      socket.on("error", (error) => (clearTimeout(timer), reject(error)));
    });
    expect(echoed).toBe("through-the-tunnel");
    await eventually(() => (cluster.activeUpgrades() === 1 ? true : undefined), ENDS_WITHIN_MS);

    expect((await kpass.api("DELETE", `${PASSES}/forwarder`)).status).toBe(200);
    await eventually(() => (cluster.activeUpgrades() === 0 ? true : undefined), ENDS_WITHIN_MS);
    await session.waitForExit(ENDS_WITHIN_MS);
  }, 60_000);
}

test("kubectl logs -f through a pass ends when the pass is deleted", async () => {
  await streamsAre(0);
  const follower = await createPass(kpass, "follower", viewSpec("follower"));
  const session = startTrackedKubectl("1.33", kubeconfigFor(kpass, follower.token), ["logs", "-f", "-n", "default", "web-0", "--tail=1"]);
  await session.waitForLine((l) => l === "web-0/main line 11", LINE_WITHIN_MS);
  await streamsAre(1);
  expect((await kpass.api("DELETE", `${PASSES}/follower`)).status).toBe(200);
  await session.waitForExit(ENDS_WITHIN_MS);
  await streamsAre(0);
}, 60_000);

// -------------------------------------------------------------------------------------------------
// 5: kpass's own API

describe("watches on kpass's own API", () => {
  for (const version of VERSIONS) {
    test(`kubectl ${version} get clusters -w with an admin pass ends when the pass is patched to admin: false`, async () => {
      await createPass(kpass, "ops-admin", { user: "ops", admin: true, roles: ["cluster-admin"], clusters: { names: ["*"] } });
      const response = await kpass.api("GET", `${PASSES}/ops-admin/kubeconfig`);
      expect(response.status).toBe(200);
      const config = join(kpass.dataDir, `ops-admin-${version}.kubeconfig`);
      writeFileSync(config, await response.text());

      const watcher = startTrackedKubectl(version, config, ["--context", "kpass", "get", "clusters", "-w"]);
      await watcher.waitForLine((l) => l.startsWith("c1 ") || l.startsWith("c1\t"), LINE_WITHIN_MS);
      // A second watch on the same API with the kpass admin (another pass) must survive the edit.
      const adminWatch = startTrackedKubectl(version, kpass.adminKubeconfig, ["--context", "kpass", "get", "passes", "-w"]);
      await adminWatch.waitForLine((l) => l.startsWith("ops-admin"), LINE_WITHIN_MS);
      await Bun.sleep(300);
      expect(watcher.exited()).toBe(false);

      expect((await kpass.api("PATCH", `${PASSES}/ops-admin`, { spec: { admin: false } }, MERGE)).status).toBe(200);
      await watcher.waitForExit(ENDS_WITHIN_MS);
      // The admin's own watch saw the edit and is still open.
      await Bun.sleep(300);
      expect(adminWatch.exited(), adminWatch.describe()).toBe(false);

      // A non-admin pass reaching "*" still reads clusters, but no longer passes.
      const passes = await runKubectl(version, ["--kubeconfig", config, "--context", "kpass", "get", "passes", "-o", "name"]);
      expect(passes.stdout.trim()).toBe("pass.cluster.kpass.dev/ops-admin");
      await adminWatch.stop();
      await kpass.api("DELETE", `${PASSES}/ops-admin`);
    }, 60_000);
  }

  test("a raw watch on kpass's API with a pass ends when the pass is deleted, and the token is then 401", async () => {
    const { token } = await createPass(kpass, "api-watcher", viewSpec("api-watcher"));
    const response = await kpass.api("GET", `${CLUSTERS}?watch=true`, undefined, { token });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"ADDED"');
    expect((await kpass.api("DELETE", `${PASSES}/api-watcher`)).status).toBe(200);
    // The stream ends (cleanly or with an error): either way no more reads hang.
    const ended = await Promise.race([
      (async () => {
        try {
          for (;;) {
            const { done } = await reader.read();
            if (done) return "done";
          }
        } catch {
          return "error";
        }
      })(),
      Bun.sleep(ENDS_WITHIN_MS).then(() => "still open"),
    ]);
    expect(ended).not.toBe("still open");
    void reader.cancel().catch(() => {});
    expect((await kpass.api("GET", `${CLUSTERS}?watch=true`, undefined, { token })).status).toBe(401);
  }, 30_000);
});

// -------------------------------------------------------------------------------------------------
// 6: --max-streams-per-pass

describe("--max-streams-per-pass 2", () => {
  let limited: KpassProcess;
  const open: AbortController[] = [];

  beforeAll(async () => {
    limited = await startKpass({ args: ["--max-streams-per-pass", "2"] });
    expect((await limited.api("POST", CLUSTERS, clusterManifest("c1", cluster, { token: "member-token" }))).status).toBe(201);
  });

  afterAll(async () => {
    for (const abort of open) abort.abort();
    await limited?.stop();
    if (limited) removeDataDir(limited.dataDir);
  });

  /** Opens a watch through `limited` and reads its first event; the body is kept open. */
  async function openWatch(token: string): Promise<{ response: Response; abort: AbortController }> {
    const abort = new AbortController();
    open.push(abort);
    const response = await viaProxy(limited, token, "/api/v1/namespaces/default/configmaps?watch=true", { signal: abort.signal });
    if (response.status === 200) {
      const reader = response.body!.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toContain('"ADDED"');
      reader.releaseLock();
    }
    return { response, abort };
  }

  test("a third watch of one pass is 429 with a Status and Retry-After; another pass still watches; closing one frees a slot", async () => {
    await streamsAre(0);
    const p1 = await createPass(limited, "p1", { user: "p1", clusters: { names: ["c1"] }, roles: ["edit"] });
    const p2 = await createPass(limited, "p2", viewSpec("p2"));
    const a = await openWatch(p1.token);
    const b = await openWatch(p1.token);
    expect(a.response.status).toBe(200);
    expect(b.response.status).toBe(200);
    await streamsAre(2);

    const before = cluster.requests.length;
    const third = await openWatch(p1.token);
    expect(third.response.status).toBe(429);
    expect(third.response.headers.get("retry-after")).toMatch(/^\d+$/);
    const status = await statusOf(third.response);
    expect(status.kind).toBe("Status");
    expect(status.code).toBe(429);
    expect(status.reason).toBe("TooManyRequests");
    expect(status.message).toContain('pass "p1"');
    // Refused before anything went to the cluster (kpass's health probes may still arrive meanwhile).
    expect(cluster.requests.slice(before).filter((r) => r.path.includes("/configmaps"))).toEqual([]);
    // The bound counts every kind of stream: kpass's own API watch and an exec tunnel are refused too.
    const ownWatch = await limited.api("GET", `${CLUSTERS}?watch=true`, undefined, { token: p1.token });
    expect(ownWatch.status).toBe(429);
    expect(ownWatch.headers.get("retry-after")).toMatch(/^\d+$/);
    void ownWatch.body?.cancel().catch(() => {});
    const exec = await runKubectl("1.33", ["--kubeconfig", kubeconfigFor(limited, p1.token), "exec", "-n", "default", "web-0", "--", "true"], { timeoutMs: 30_000 });
    expect(exec.exitCode).not.toBe(0);
    expect(cluster.requests.slice(before).some((r) => r.path.endsWith("/exec"))).toBe(false);
    // Plain requests are not streams: still fine.
    expect((await viaProxy(limited, p1.token, "/api/v1/namespaces/default/configmaps")).status).toBe(200);

    // Another pass has its own bound.
    const other = await openWatch(p2.token);
    expect(other.response.status).toBe(200);
    await streamsAre(3);

    // Closing one of p1's watches gives the slot back (once kpass has seen the client leave).
    a.abort.abort();
    await streamsAre(2);
    const reopened = await eventually(async () => {
      const attempt = await openWatch(p1.token);
      if (attempt.response.status === 200) return attempt;
      void attempt.response.body?.cancel().catch(() => {});
      return undefined;
    }, ENDS_WITHIN_MS);
    expect(reopened.response.status).toBe(200);
    await streamsAre(3);
    for (const w of [b, other, reopened]) w.abort.abort();
    await streamsAre(0);
  }, 60_000);
  test("a refused (429) proxied watch is audited like other refusals", async () => {
    const p3 = await createPass(limited, "p3", { user: "p3", clusters: { names: ["c1"] }, roles: ["edit"] });
    const a = await openWatch(p3.token);
    const b = await openWatch(p3.token);
    expect([a.response.status, b.response.status]).toEqual([200, 200]);
    const third = await openWatch(p3.token);
    expect(third.response.status).toBe(429);
    void third.response.body?.cancel().catch(() => {});
    const exec = await runKubectl("1.27", ["--kubeconfig", kubeconfigFor(limited, p3.token), "exec", "-n", "default", "web-0", "--", "true"], { timeoutMs: 30_000 });
    expect(exec.exitCode).not.toBe(0);
    // A plain request after the refusals: once its audit line is written, earlier lines are too
    // (the log is written in order, in batches within 200 ms).
    type AuditLine = { pass?: string; status?: number; cluster?: string; verb?: string; path?: string };
    const readAudit = (): AuditLine[] => {
      try {
        return readFileSync(join(limited.dataDir, "audit.log"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditLine);
      } catch {
        return [];
      }
    };
    expect((await viaProxy(limited, p3.token, "/api/v1/namespaces/default/pods")).status).toBe(200);
    await eventually(() => (readAudit().some((l) => l.pass === "p3" && l.verb === "list" && l.status === 200) ? true : undefined), ENDS_WITHIN_MS);
    const mine = readAudit().filter((l) => l.pass === "p3");
    // The refused exec (upgrade path) is audited as a 429 ...
    expect(mine.some((l) => l.status === 429 && l.path?.includes("/pods/web-0/exec")), JSON.stringify(mine)).toBe(true);
    // ... and so is the refused watch (REST path): both go through the one admission step.
    expect(mine.some((l) => l.status === 429 && l.path?.includes("/configmaps?watch=true")), JSON.stringify(mine)).toBe(true);
    for (const w of [a, b]) w.abort.abort();
    await streamsAre(0);
  }, 60_000);
});

// -------------------------------------------------------------------------------------------------
// 7: RBAC escalation through a cluster that sees kpass's credential

describe("RBAC writes through a non-impersonating cluster", () => {
  const RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a";
  const binding = (name: string, role: string) => ({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name, namespace: "team-a" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "mallory" }],
  });
  const rbacRequests = (from: number) => cluster.requests.slice(from).filter((r) => r.path.startsWith("/apis/rbac.authorization.k8s.io/"));
  let nsadmin: string;

  beforeAll(async () => {
    nsadmin = (await createPass(kpass, "nsadmin", { user: "nsadmin", clusters: { names: ["c1", "c1-user"] }, roles: ["admin"], namespaces: ["team-a"] })).token;
  });

  test("a RoleBinding to cluster-admin is 403 (not held) and never reaches the cluster", async () => {
    const before = cluster.requests.length;
    const response = await viaProxy(kpass, nsadmin, `${RBAC}/rolebindings`, { method: "POST", body: binding("escalate", "cluster-admin") });
    const status = await statusOf(response);
    expect(response.status).toBe(403);
    expect(status.kind).toBe("Status");
    expect(status.reason).toBe("Forbidden");
    expect(status.message).toContain("attempting to grant RBAC permissions not currently held");
    expect(rbacRequests(before)).toEqual([]);
  });

  test("a Role in team-a granting * on * is 403 and never reaches the cluster", async () => {
    const before = cluster.requests.length;
    const role = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "everything", namespace: "team-a" }, rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] };
    const response = await viaProxy(kpass, nsadmin, `${RBAC}/roles`, { method: "POST", body: role });
    const status = await statusOf(response);
    expect(response.status).toBe(403);
    expect(status.kind).toBe("Status");
    expect(status.message).toContain("attempting to grant RBAC permissions not currently held");
    expect(rbacRequests(before)).toEqual([]);
  });

  test("a RoleBinding to ClusterRole view (held) is forwarded to the cluster", async () => {
    const before = cluster.requests.length;
    const response = await viaProxy(kpass, nsadmin, `${RBAC}/rolebindings`, { method: "POST", body: binding("viewers", "view") });
    const body = await response.text();
    expect(response.status, body).not.toBe(403);
    const seen = rbacRequests(before);
    expect(seen.map((r) => `${r.method} ${r.path}`)).toEqual([`POST ${RBAC}/rolebindings`]);
    expect(seen[0]!.headers.authorization).toBe("Bearer member-token");
  });

  test("with an explicit bind rule on clusterroles/cluster-admin the binding is forwarded", async () => {
    const { token } = await createPass(kpass, "binder", {
      user: "binder",
      clusters: { names: ["c1"] },
      roles: ["admin"],
      namespaces: ["team-a"],
      rules: [{ verbs: ["bind"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["clusterroles"], resourceNames: ["cluster-admin"] }],
    });
    const before = cluster.requests.length;
    const response = await viaProxy(kpass, token, `${RBAC}/rolebindings`, { method: "POST", body: binding("bound", "cluster-admin") });
    const body = await response.text();
    expect(response.status, body).not.toBe(403);
    expect(rbacRequests(before).map((r) => `${r.method} ${r.path}`)).toEqual([`POST ${RBAC}/rolebindings`]);
  });

  test("through a cluster that impersonates the pass's user, the cluster decides (kpass forwards, impersonating)", async () => {
    const before = cluster.requests.length;
    const response = await viaProxy(kpass, nsadmin, `${RBAC}/rolebindings`, { method: "POST", body: binding("cluster-decides", "cluster-admin"), cluster: "c1-user" });
    const body = await response.text();
    expect(response.status, body).not.toBe(403);
    const seen = rbacRequests(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers["impersonate-user"]).toBe("nsadmin");
  });
});

// -------------------------------------------------------------------------------------------------
// Streams that revocation must end too: a cluster reached through proxyURL, and a log follow
// spelled the way kube-apiserver also reads as true (`follow=TRUE`, `follow=yes`, `follow=`).

/** Reads a response body until it ends or errors; "open" if it still runs after `timeoutMs`. */
async function bodyOutcome(reader: { read(): Promise<{ done: boolean }> }, timeoutMs = ENDS_WITHIN_MS): Promise<"ended" | "open"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    (async () => {
      try {
        for (;;) if ((await reader.read()).done) return "ended" as const;
      } catch {
        return "ended" as const;
      }
    })(),
    new Promise<"open">((resolve) => (timer = setTimeout(() => resolve("open"), timeoutMs))),
  ]);
  clearTimeout(timer);
  return outcome;
}

describe("a cluster reached through spec.access.proxyURL", () => {
  let proxy: HttpServer;
  let tunnels = 0;
  const sockets = new Set<{ destroy(): void }>();

  beforeAll(async () => {
    // A plain HTTP CONNECT proxy in front of the fixture.
    proxy = createHttpServer();
    proxy.on("connect", (req, socket, head) => {
      tunnels++;
      const [host, port] = (req.url ?? "").split(":");
      sockets.add(socket);
      const upstream = connect(Number(port), host!, () => {
        socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        upstream.write(head);
        upstream.pipe(socket);
        socket.pipe(upstream);
      });
      sockets.add(upstream);
      upstream.on("error", () => socket.destroy());
      socket.on("error", () => upstream.destroy());
      socket.on("close", () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const manifest = clusterManifest("c1-proxied", cluster, { token: "member-token" }) as { spec: { access: Record<string, unknown> } };
    manifest.spec.access.proxyURL = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    expect((await kpass.api("POST", CLUSTERS, manifest)).status).toBe(201);
  });

  afterAll(async () => {
    // kpass keeps its CONNECT tunnels alive: hijacked sockets are not the server's to close.
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  });

  test("deleting the pass ends a watch through the proxy", async () => {
    await streamsAre(0);
    const { token } = await createPass(kpass, "proxied", { user: "proxied", clusters: { names: ["c1-proxied"] }, roles: ["view"] });
    const abort = new AbortController();
    try {
      const response = await viaProxy(kpass, token, "/api/v1/namespaces/default/configmaps?watch=true", { cluster: "c1-proxied", signal: abort.signal });
      expect(response.status).toBe(200);
      expect(tunnels).toBeGreaterThan(0);
      const reader = response.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain('"ADDED"');
      await streamsAre(1);
      expect((await kpass.api("DELETE", `${PASSES}/proxied`)).status).toBe(200);
      // kpass bug (see report): forwardThroughProxy() never looks at the lease's signal.
      expect(await bodyOutcome(reader)).toBe("ended");
      await streamsAre(0);
    } finally {
      abort.abort();
      await streamsAre(0);
    }
  }, 30_000);
});

describe("log follows kube-apiserver reads as follow (any value but 0/false)", () => {
  let member: HttpsServer;
  let openFollows = 0;

  beforeAll(async () => {
    // A member cluster that reads query booleans the way kube-apiserver does
    // (apimachinery Convert_Slice_string_To_bool: absent, "0" or "false" in any case is false).
    const ca = await createCertificateAuthority("follow-cluster-ca");
    const serving = await issueServingCertificate(ca, { commonName: "follow-cluster", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    member = createHttpsServer({ key: serving.keyPem, cert: serving.certPem }, (req, res) => {
      const url = new URL(req.url ?? "/", "https://x");
      if (req.headers.authorization !== "Bearer follow-token") {
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code: 401, reason: "Unauthorized" }));
        return;
      }
      if (url.pathname === "/version") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ major: "1", minor: "30", gitVersion: "v1.30.2" }));
        return;
      }
      if (url.pathname === "/api/v1/namespaces/default/pods/web-0/log") {
        const first = url.searchParams.getAll("follow")[0];
        const follow = first !== undefined && first !== "0" && first.toLowerCase() !== "false";
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("line 1\n");
        if (!follow) return void res.end("line 2\n");
        openFollows++;
        let n = 1;
        const timer = setInterval(() => res.write(`line ${++n}\n`), 200);
        res.on("close", () => {
          clearInterval(timer);
          openFollows--;
        });
        return;
      }
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code: 404, reason: "NotFound" }));
    });
    await new Promise<void>((resolve) => member.listen(0, "127.0.0.1", resolve));
    const port = (member.address() as AddressInfo).port;
    const manifest = { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name: "follow" }, spec: { access: { endpoint: `https://127.0.0.1:${port}`, caBundle: Buffer.from(ca.certPem).toString("base64"), credential: { type: "ServiceAccountToken", serviceAccountToken: "follow-token" } } } };
    expect((await kpass.api("POST", CLUSTERS, manifest)).status).toBe(201);
  });

  afterAll(async () => {
    member?.closeAllConnections?.();
    await new Promise<void>((resolve) => (member ? member.close(() => resolve()) : resolve()));
  });

  for (const spelling of ["true", "TRUE", "yes"]) {
    test(`?follow=${spelling}: deleting the pass ends the log stream`, async () => {
      await eventually(() => (openFollows === 0 ? true : undefined), ENDS_WITHIN_MS);
      const { token } = await createPass(kpass, "tail", { user: "tail", clusters: { names: ["follow"] }, roles: ["view"] });
      const abort = new AbortController();
      try {
        const response = await viaProxy(kpass, token, `/api/v1/namespaces/default/pods/web-0/log?follow=${spelling}`, { cluster: "follow", signal: abort.signal });
        expect(response.status).toBe(200);
        const reader = response.body!.getReader();
        expect(new TextDecoder().decode((await reader.read()).value)).toContain("line 1");
        expect(openFollows).toBe(1);
        expect((await kpass.api("DELETE", `${PASSES}/tail`)).status).toBe(200);
        // kpass bug (see report): isStreaming() only knows follow=true|1, so other spellings get no lease.
        expect(await bodyOutcome(reader)).toBe("ended");
        await eventually(() => (openFollows === 0 ? true : undefined), ENDS_WITHIN_MS);
      } finally {
        abort.abort();
        await eventually(() => (openFollows === 0 ? true : undefined), ENDS_WITHIN_MS).catch(() => undefined);
      }
    }, 30_000);
  }
});
