/**
 * exec, attach, cp and port-forward THROUGH kpass: the edge authenticates and authorizes the
 * upgrade, then tunnels SPDY/3.1 and WebSocket bytes to the cluster untouched. The same scenarios
 * as against the fixture directly, for a bearer-token cluster and a client-certificate cluster.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { startTestCluster, type TestCluster, type UpgradeHandler } from "./fixture/cluster/server.ts";
import { createStreamUpgradeHandler, rejectUpgrade, type StreamUpgradeFixture } from "./fixture/streams/index.ts";
import { defineClientNodeScenarioTests, defineStreamScenarioTests, execExitCodeScenario, type StreamScenarioTarget } from "./fixture/streams/scenarios.ts";
import { kubectlBinary, kubectlEnv, runKubectl } from "./harness/kubectl.ts";
import { auditLines, clientCredential, eventually, clusterManifest, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { RawConnection, rawRequest } from "./harness/raw-http.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const PASSES = "/apis/cluster.kpass.dev/v1beta1/passes";

let kpass: KpassProcess;
let tokenCluster: TestCluster;
let certCluster: TestCluster;
let spdyOnlyCluster: TestCluster;
let streams: StreamUpgradeFixture;
let kubeconfig: string;

/** A cluster that refuses WebSocket upgrades, as an apiserver before 1.30 does. */
function spdyOnly(handler: UpgradeHandler): UpgradeHandler {
  return (req, socket, head, target) => {
    if ((req.headers.upgrade ?? "").toLowerCase() === "websocket") return rejectUpgrade(socket, 400, "BadRequest", "websocket upgrades are not supported here");
    handler(req, socket, head, target);
  };
}

beforeAll(async () => {
  streams = createStreamUpgradeHandler();
  const { ca, client } = await clientCredential();
  [tokenCluster, certCluster, spdyOnlyCluster] = await Promise.all([
    startTestCluster({ credential: { type: "token", token: "stream-token" }, upgrade: streams.handler }),
    startTestCluster({ credential: { type: "clientCertificate", clientCa: ca.certPem }, upgrade: streams.handler }),
    startTestCluster({ credential: { type: "token", token: "stream-token" }, upgrade: spdyOnly(streams.handler) }),
  ]);
  kpass = await startKpass({ args: ["--audit", "file"] });
  for (const [name, manifest] of [
    ["token", clusterManifest("token", tokenCluster, { token: "stream-token" })],
    ["cert", clusterManifest("cert", certCluster, { client })],
    ["spdy-only", clusterManifest("spdy-only", spdyOnlyCluster, { token: "stream-token" })],
    ["wrong-token", clusterManifest("wrong-token", tokenCluster, { token: "not-the-token" })],
    ["down", { ...clusterManifest("down", tokenCluster, { token: "x" }), spec: { access: { endpoint: "https://127.0.0.1:1", credential: { type: "ServiceAccountToken", serviceAccountToken: "x" } } } }],
  ] as const) {
    expect((await kpass.api("POST", CLUSTERS, manifest)).status).toBe(201);
  }
  kubeconfig = writeKubeconfig(kpass, kpass.adminToken, {
    token: proxyUrl(kpass, "token"),
    cert: proxyUrl(kpass, "cert"),
    "spdy-only": proxyUrl(kpass, "spdy-only"),
    "wrong-token": proxyUrl(kpass, "wrong-token"),
    down: proxyUrl(kpass, "down"),
    unknown: proxyUrl(kpass, "no-such-cluster"),
  });
});

afterAll(async () => {
  await kpass?.stop();
  await Promise.all([tokenCluster?.stop(), certCluster?.stop(), spdyOnlyCluster?.stop()]);
  await streams?.close();
  if (kpass) removeDataDir(kpass.dataDir);
});

const via = (context: string) => (): StreamScenarioTarget => ({ kubeconfig, context });

describe("bearer-token cluster through kpass", () => {
  defineStreamScenarioTests("token", via("token"));
  defineClientNodeScenarioTests("token", via("token"));
});

describe("client-certificate cluster through kpass", () => {
  defineStreamScenarioTests("cert", via("cert"));
  defineClientNodeScenarioTests("cert", via("cert"));
});

describe("the tunnel's edges", () => {
  test("the cluster saw its own credential and the whole query, never kpass's token", () => {
    const exec = tokenCluster.requests.find((r) => r.path.endsWith("/exec"))!;
    expect(exec.headers.authorization).toBe("Bearer stream-token");
    expect(exec.query).toContain("command=");
    expect(exec.query).toContain("stdout=");
    const all = [...tokenCluster.requests, ...certCluster.requests];
    expect(all.some((r) => String(r.headers.authorization ?? "").includes(kpass.adminToken))).toBe(false);
    expect(certCluster.requests.some((r) => r.headers.authorization !== undefined)).toBe(false);
  });

  test("client identity headers on an upgrade never reach the cluster", async () => {
    const before = tokenCluster.requests.length;
    await rawRequest(
      kpass.url,
      kpass.caPem,
      `POST ${CLUSTERS}/token/proxy/api/v1/namespaces/default/pods/web-0/exec?command=true&stdout=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${kpass.adminToken}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Forwarded-For: 6.6.6.6\r\nX-Remote-User: root\r\nX-Remote-Group: system:masters\r\n\r\n`,
    ).catch(() => undefined); // the tunnel's reply is the cluster's business here; what it received is the point
    const seen = tokenCluster.requests.slice(before).find((r) => r.path.endsWith("/exec"))!;
    expect(seen).toBeDefined();
    expect(seen.headers.authorization).toBe("Bearer stream-token");
    for (const name of ["x-forwarded-for", "x-remote-user", "x-remote-group"]) expect(seen.headers[name]).toBeUndefined();
    expect(seen.headers["x-stream-protocol-version"]).toBe("v4.channel.k8s.io");
  });

  test("a client that leaves while its upgrade is being set up leaves no tunnel behind", async () => {
    const baseline = tokenCluster.activeUpgrades();
    const sockets = () => readdirSync(`/proc/${kpass.pid}/fd`).filter((fd) => { try { return readlinkSync(`/proc/${kpass.pid}/fd/${fd}`).startsWith("socket:"); } catch { return false; } }).length;
    const socketsBefore = sockets();
    for (let i = 0; i < 20; i++) {
      const connection = await RawConnection.open(kpass.url, kpass.caPem);
      connection.send(`POST ${CLUSTERS}/token/proxy/api/v1/namespaces/default/pods/web-0/exec?command=cat&stdin=true&stdout=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${kpass.adminToken}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
      connection.close();
    }
    await eventually(() => (tokenCluster.activeUpgrades() <= baseline && sockets() <= socketsBefore ? true : undefined), 5000).catch(() => undefined);
    expect(tokenCluster.activeUpgrades()).toBeLessThanOrEqual(baseline);
    expect(sockets()).toBeLessThanOrEqual(socketsBefore);
  });

  test("when a cluster refuses WebSocket, kubectl 1.33 falls back to SPDY through kpass", async () => {
    await execExitCodeScenario("1.33", via("spdy-only")());
    const seen = spdyOnlyCluster.requests.filter((r) => r.path.endsWith("/exec")).map((r) => String(r.headers.upgrade).toLowerCase());
    expect(seen).toContain("websocket");
    expect(seen).toContain("spdy/3.1");
  });

  test("unknown, unreachable and wrongly-credentialed clusters answer before any upgrade", async () => {
    const unknown = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "--context", "unknown", "exec", "web-0", "--", "true"]);
    expect(unknown.exitCode).not.toBe(0);
    const raw = (cluster: string, upgrade: string) =>
      rawRequest(kpass.url, kpass.caPem, `GET ${CLUSTERS}/${cluster}/proxy/api/v1/namespaces/default/pods/web-0/exec?command=true&stdout=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${kpass.adminToken}\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
    const notFound = await raw("no-such-cluster", "websocket");
    expect(notFound.status).toBe(404);
    expect(JSON.parse(notFound.body).message).toContain('"no-such-cluster" not found');
    const down = await raw("down", "SPDY/3.1");
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body).message).toContain('cluster "down" is unreachable');
    const wrong = await raw("wrong-token", "websocket");
    expect(wrong.status).toBe(401);
    const noToken = await rawRequest(kpass.url, kpass.caPem, `GET ${CLUSTERS}/token/proxy/api/v1/namespaces/default/pods/web-0/exec?command=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`);
    expect(noToken.status).toBe(401);
  });

  test("exec with a view-only pass is refused over SPDY (1.27) and WebSocket (1.33), and --as needs a rule", async () => {
    const created = await kpass.api("POST", PASSES, { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name: "viewer" }, spec: { user: "viewer", clusters: { names: ["token"] }, roles: ["view"] } });
    const token = (await created.json()).status.token as string;
    const viewer = writeKubeconfig(kpass, token, { token: proxyUrl(kpass, "token") });
    const before = tokenCluster.requests.filter((r) => r.path.endsWith("/exec")).length;
    for (const version of ["1.27", "1.33"] as const) {
      const refused = await runKubectl(version, ["--kubeconfig", viewer, "exec", "web-0", "--", "id"]);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toContain('cannot create resource "pods/exec"');
    }
    const impersonating = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "--context", "token", "exec", "web-0", "--as", "someone", "--", "true"]);
    expect(impersonating.exitCode).toBe(0);
    const editor = await kpass.api("POST", PASSES, { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name: "editor" }, spec: { user: "editor", clusters: { names: ["token"] }, roles: ["edit"] } });
    const editorConfig = writeKubeconfig(kpass, (await editor.json()).status.token, { token: proxyUrl(kpass, "token") });
    const as = await runKubectl("1.27", ["--kubeconfig", editorConfig, "exec", "web-0", "--as", "root", "--", "true"]);
    expect(as.exitCode).not.toBe(0);
    expect(as.stderr).toContain('users "root" is forbidden: User "editor" cannot impersonate resource "users"');
    expect(tokenCluster.requests.filter((r) => r.path.endsWith("/exec")).length).toBe(before + 1);
  });

  test("exec sessions are audited with their command", async () => {
    const lines = await auditLines(kpass, (all) => all.some((l) => l.subresource === "exec" && l.status === 101));
    const exec = lines.find((l) => l.subresource === "exec" && l.status === 101 && JSON.stringify(l.command).includes("exit 3"));
    expect(exec).toBeDefined();
    expect(exec.verb).toBe("create");
    expect(exec.bytesOut).toBeGreaterThan(0);
  });

  test("200 exec sessions leave no sockets or memory behind", async () => {
    const fds = () => readdirSync(`/proc/${kpass.pid}/fd`).length;
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${kpass.pid}/status`, "utf8"))![1]) * 1024;
    const binary = kubectlBinary("1.33");
    const one = async () => {
      const p = Bun.spawn([binary, "--kubeconfig", kubeconfig, "--context", "token", "exec", "web-0", "--", "true"], { stdout: "ignore", stderr: "pipe", env: kubectlEnv() });
      const [code, stderr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      // What kubectl said, when it fails: one failure in 220 under a loaded CI machine (2026-12-03) said nothing else.
      expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    };
    // Warm up at the same concurrency, so per-cluster keep-alive pools are at their working size.
    for (let batch = 0; batch < 2; batch++) await Promise.all(Array.from({ length: 10 }, one));
    await streams.sessions.waitForIdle(5000);
    await Bun.sleep(500);
    const [fdsBefore, rssBefore] = [fds(), rss()];
    for (let batch = 0; batch < 20; batch++) await Promise.all(Array.from({ length: 10 }, one));
    await streams.sessions.waitForIdle(10_000);
    await Bun.sleep(1500);
    // Idle keep-alive connections to the cluster vary with the burst's peak (seen: ±6); a leak
    // would grow with the 200 sessions.
    expect(fds()).toBeLessThanOrEqual(fdsBefore + 16);
    expect(rss() - rssBefore).toBeLessThan(48 * 1024 * 1024);
  }, 120_000);
});
