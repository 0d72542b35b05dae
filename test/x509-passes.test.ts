/**
 * Passes as X.509 client certificates, end to end through a real kpass: kubeconfigs with
 * client-certificate-data made by `kpass kubeconfig --cert` for kubectl 1.27 (SPDY) and 1.33
 * (WebSocket) — get, refusals, exec, port-forward, logs -f, watch —, @kubernetes/client-node with a
 * certificate, the self-service CSR flow with a key made by openssl, revocation on an open
 * keep-alive connection and on a new one, a re-created pass, an expired certificate, a foreign CA,
 * bad CSRs, and the audit lines (serials, issuances).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { parse } from "yaml";
import { createCertificateAuthority, issueClientCertificate } from "../src/edge/pki.ts";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { createStreamUpgradeHandler, type StreamUpgradeFixture } from "./fixture/streams/index.ts";
import { auditLines, clusterManifest, createPass, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { runKubectl, startKubectl, type KubectlVersion } from "./harness/kubectl.ts";
import { RawTlsConnection } from "./harness/raw-tls.ts";

const PASSES = "/apis/cluster.kpass.dev/v1beta1/passes";
const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const PODS = `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`;
const MERGE = { headers: { "content-type": "application/merge-patch+json" } };
const ROOT = join(import.meta.dir, "..");
/** Bound on a line from a background kubectl (its start-up and discovery included). */
const LINE_WITHIN_MS = 20_000;

let prod: TestCluster;
let streams: StreamUpgradeFixture;
let kpass: KpassProcess;
let aliceToken: string;

/** view in default on prod, plus exec and port-forward there. */
const aliceSpec = {
  user: "alice",
  groups: ["devs"],
  clusters: { names: ["prod"] },
  roles: ["view"],
  namespaces: ["default"],
  rules: [{ verbs: ["create", "get"], apiGroups: [""], resources: ["pods/exec", "pods/portforward"], namespaces: ["default"] }],
};

beforeAll(async () => {
  streams = createStreamUpgradeHandler();
  prod = await startTestCluster({ credential: { type: "token", token: "prod-token" }, upgrade: streams.handler });
  kpass = await startKpass({ args: ["--audit", "file"] });
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("prod", prod, { token: "prod-token" }))).status).toBe(201);
  aliceToken = await createPass(kpass, "alice", aliceSpec);
});

afterAll(async () => {
  await kpass?.stop();
  await prod?.stop();
  await streams?.close();
  if (kpass) removeDataDir(kpass.dataDir);
});

const b64 = (text: string) => Buffer.from(text).toString("base64");

/** Runs the kpass CLI against the test server's data directory. */
async function cli(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), ...args, "--data", kpass.dataDir], { stdout: "pipe", stderr: "pipe", cwd: ROOT });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

/** `kpass kubeconfig NAME --cert`, written to a file. */
async function certKubeconfig(name: string, extra: string[] = []): Promise<string> {
  const { stdout, stderr, code } = await cli(["kubeconfig", name, "--cert", ...extra]);
  expect(code, stderr).toBe(0);
  const path = join(kpass.dataDir, `${name}-${crypto.randomUUID().slice(0, 8)}.cert.kubeconfig`);
  writeFileSync(path, stdout);
  return path;
}

function userOf(kubeconfigPath: string): Record<string, string> {
  return parse(readFileSync(kubeconfigPath, "utf8")).users[0].user;
}

function certOf(kubeconfigPath: string): { cert: string; key: string } {
  const user = userOf(kubeconfigPath);
  return { cert: Buffer.from(user["client-certificate-data"]!, "base64").toString(), key: Buffer.from(user["client-key-data"]!, "base64").toString() };
}

/** A key and CSR made by openssl, as the issue's self-service flow makes them. */
function opensslCsr(name: string, keyArgs: string[], subject: string): { csrPem: string; keyPem: string } {
  const keyPath = join(kpass.dataDir, `${name}.key`);
  const csrPath = join(kpass.dataDir, `${name}.csr`);
  const proc = Bun.spawnSync(["openssl", "req", "-new", ...keyArgs, "-nodes", "-keyout", keyPath, "-subj", subject, "-out", csrPath], { stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`openssl req: ${proc.stderr.toString()}`);
  return { csrPem: readFileSync(csrPath, "utf8"), keyPem: readFileSync(keyPath, "utf8") };
}

const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

function certificateRequest(csrPem: string, expirationSeconds?: number) {
  return { apiVersion: "cluster.kpass.dev/v1beta1", kind: "PassCertificateRequest", spec: { request: b64(csrPem), ...(expirationSeconds === undefined ? {} : { expirationSeconds }) } };
}

/** POSTs a PassCertificateRequest for `pass` (as the admin unless `token` says otherwise). */
async function requestCertificate(pass: string, csrPem: string, init: { token?: string; expirationSeconds?: number } = {}) {
  const response = await kpass.api("POST", `${PASSES}/${pass}/certificate`, certificateRequest(csrPem, init.expirationSeconds), { token: init.token });
  return { status: response.status, body: await response.json() };
}

/** Calls kpass presenting a client certificate and no token. */
async function withCert(path: string, pair: { cert: string; key: string }, init: { method?: string; body?: unknown; token?: string } = {}) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  const response = await fetch(`${kpass.url}${path}`, { method: init.method ?? "GET", headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), tls: { ca: kpass.caPem, cert: pair.cert, key: pair.key } });
  const text = await response.text();
  let json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text };
}

describe("kpass kubeconfig --cert and the client CA", () => {
  test("the kubeconfig has client-certificate-data and client-key-data and no token; each one is a fresh key", async () => {
    const first = await certKubeconfig("alice", ["--cert-ttl", "2h"]);
    const second = await certKubeconfig("alice");
    const text = readFileSync(first, "utf8");
    expect(text).not.toContain("token");
    const config = parse(text);
    expect(config.contexts.map((c: { name: string }) => c.name)).toEqual(["prod", "kpass"]);
    expect(Object.keys(userOf(first)).sort()).toEqual(["client-certificate-data", "client-key-data"]);
    const a = certOf(first);
    const b = certOf(second);
    expect(a.key).not.toBe(b.key);
    const cert = new X509Certificate(a.cert);
    expect(cert.subject.split("\n").sort()).toEqual(["CN=alice", "O=devs"]);
    expect(cert.subjectAltName).toMatch(/^URI:urn:kpass:pass:alice:[0-9a-f-]{36}$/);
    // --cert-ttl 2h: never longer than asked (the default cap is 24 h).
    const lifetime = Date.parse(cert.validTo) - Date.now();
    expect(lifetime).toBeLessThanOrEqual(2 * 3_600_000);
    expect(Date.parse(new X509Certificate(b.cert).validTo) - Date.now()).toBeLessThanOrEqual(24 * 3_600_000);
    expect(Date.parse(new X509Certificate(b.cert).validTo) - Date.now()).toBeGreaterThan(2 * 3_600_000);
  });

  test("the client CA is kpass's own, separate from the serving CA, its key mode 0600", () => {
    const clientCa = readFileSync(join(kpass.dataDir, "client-ca.crt"), "utf8");
    expect(clientCa).not.toBe(kpass.caPem);
    expect(statSync(join(kpass.dataDir, "client-ca.key")).mode & 0o777).toBe(0o600);
    expect(new X509Certificate(clientCa).ca).toBe(true);
  });
});

for (const version of ["1.27", "1.33"] as const) {
  describe(`kubectl ${version} with a certificate kubeconfig`, () => {
    let kubeconfig: string;
    const kubectl = (args: string[], options: { stdin?: string } = {}) => runKubectl(version, ["--kubeconfig", kubeconfig, "--context", "prod", ...args], options);

    beforeAll(async () => {
      kubeconfig = await certKubeconfig("alice");
    });

    test("get is allowed where the pass allows it and refused where it does not, worded as for a token", async () => {
      const pods = await kubectl(["get", "pods", "-n", "default", "-o", "name"]);
      expect(pods.exitCode, pods.stderr).toBe(0);
      expect(pods.stdout).toContain("pod/web-0");
      const other = await kubectl(["get", "pods", "-n", "team-a"]);
      expect(other.exitCode).not.toBe(0);
      expect(other.stderr).toContain('pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-a": the pass "alice" on cluster "prod" does not allow it');
      const del = await kubectl(["delete", "pod", "web-0", "-n", "default"]);
      expect(del.exitCode).not.toBe(0);
      expect(del.stderr).toContain('pods "web-0" is forbidden: User "alice" cannot delete resource "pods"');
      const passes = await runKubectl(version, ["--kubeconfig", kubeconfig, "--context", "kpass", "get", "passes", "-o", "name"]);
      expect(passes.stdout.trim()).toBe("pass.cluster.kpass.dev/alice");
      const whoami = await runKubectl(version, ["--kubeconfig", kubeconfig, "--context", "kpass", "auth", "whoami", "-o", "json"]);
      if (whoami.exitCode === 0) expect(JSON.parse(whoami.stdout).status.userInfo.username).toBe("alice");
      const canI = await kubectl(["auth", "can-i", "delete", "pods", "-n", "default"]);
      expect(canI.stdout.trim()).toStartWith("no");
      // can-i answers for a certificate exactly as for a token of the same pass.
      const tokenConfig = writeKubeconfig(kpass, aliceToken, { prod: proxyUrl(kpass, "prod") });
      for (const question of [["get", "pods", "-n", "default"], ["delete", "pods", "-n", "default"], ["list", "pods", "-n", "team-a"]]) {
        const byCert = await kubectl(["auth", "can-i", ...question]);
        const byToken = await runKubectl(version, ["--kubeconfig", tokenConfig, "--context", "prod", "auth", "can-i", ...question]);
        expect([byCert.exitCode, byCert.stdout, byCert.stderr]).toEqual([byToken.exitCode, byToken.stdout, byToken.stderr]);
      }
      const as = await kubectl(["get", "pods", "-n", "default", "--as", "bob"]);
      expect(as.stderr).toContain('users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope');
    });

    test("exec (SPDY on 1.27, WebSocket on 1.33) runs through the tunnel", async () => {
      const exec = await kubectl(["exec", "-i", "-n", "default", "web-0", "--", "cat"], { stdin: "through-a-certificate\n" });
      expect(exec.exitCode, exec.stderr).toBe(0);
      expect(exec.stdout).toBe("through-a-certificate\n");
      const refused = await kubectl(["exec", "-n", "team-a", "api-0", "--", "true"]);
      // kubectl reads the pod first, so the refusal names that read.
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toContain('pods "api-0" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "team-a"');
    });

    test("port-forward carries bytes to the pod", async () => {
      const session = startKubectl(version, ["--context", "prod", "port-forward", "-n", "default", "pod/web-0", ":80", "--address", "127.0.0.1"], { kubeconfig });
      try {
        const line = await session.waitForLine((l) => /Forwarding from 127\.0\.0\.1:\d+ -> 80/.test(l), LINE_WITHIN_MS);
        const port = Number(/127\.0\.0\.1:(\d+)/.exec(line.text)![1]);
        const echoed = await new Promise<string>((resolve, reject) => {
          let data = "";
          const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => socket.end("cert-forward"));
          const timer = setTimeout(() => (socket.destroy(), reject(new Error("echo timed out"))), 15_000);
          socket.on("data", (chunk: Buffer) => (data += chunk.toString()));
          socket.on("end", () => (clearTimeout(timer), socket.destroy(), resolve(data)));
          socket.on("error", (error) => (clearTimeout(timer), reject(error)));
        });
        expect(echoed).toBe("cert-forward");
      } finally {
        await session.stop();
      }
    });

    test("logs -f and get -w stream", async () => {
      const follower = startKubectl(version, ["--context", "prod", "logs", "-f", "-n", "default", "web-0", "--tail=1"], { kubeconfig });
      const watcher = startKubectl(version, ["--context", "prod", "get", "configmaps", "-n", "default", "-w", "-o", "name"], { kubeconfig });
      try {
        expect((await follower.waitForLine((l) => /^web-0\/main line \d+$/.test(l), LINE_WITHIN_MS)).text).toMatch(/line/);
        await watcher.waitForLine((l) => l.startsWith("configmap/"), LINE_WITHIN_MS);
      } finally {
        await Promise.all([follower.stop(), watcher.stop()]);
      }
    });
  });
}

describe("@kubernetes/client-node with a certificate", () => {
  test("lists pods it may read and is refused with a Status where it may not", async () => {
    const kubeconfig = await certKubeconfig("alice");
    const caFile = join(kpass.dataDir, "client-node-ca.pem");
    writeFileSync(caFile, kpass.caPem);
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "harness", "client-node-cert.ts")], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: kpass.dataDir, KUBECONFIG_FILE: kubeconfig, KUBE_CONTEXT: "prod", ALLOWED_NS: "default", REFUSED_NS: "team-a", NODE_EXTRA_CA_CERTS: caFile },
    });
    const timer = setTimeout(() => proc.kill(), 30_000);
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    const line = stdout.trim().split("\n").pop() ?? "";
    let result: any; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      result = JSON.parse(line);
    } catch {
      throw new Error(`client-node printed no result: ${stdout} ${stderr}`);
    }
    expect(result.allowed, JSON.stringify(result)).toMatchObject({ ok: true });
    expect(result.allowed.pods).toContain("web-0");
    expect(result.refused.ok).toBe(false);
    expect(result.refused.code).toBe(403);
    expect(JSON.stringify(result.refused.body)).toContain('User \\"alice\\" cannot list resource \\"pods\\"');
  }, 60_000);
});

describe("the self-service CSR flow (key made by openssl)", () => {
  let olgaToken: string;
  let olga: { cert: string; key: string };

  beforeAll(async () => {
    olgaToken = await createPass(kpass, "olga", { user: "olga", groups: ["ops"], clusters: { names: ["prod"] }, roles: ["view"] });
  });

  test("the pass's own token gets 201 with the certificate; the CSR's CN and O are ignored", async () => {
    const { csrPem, keyPem } = opensslCsr("olga", P256, "/CN=admin/O=system:masters");
    const { status, body } = await requestCertificate("olga", csrPem, { token: olgaToken, expirationSeconds: 3600 });
    expect(status, JSON.stringify(body)).toBe(201);
    expect(body.kind).toBe("PassCertificateRequest");
    const certPem = Buffer.from(body.status.certificate, "base64").toString();
    const cert = new X509Certificate(certPem);
    expect(cert.subject.split("\n").sort()).toEqual(["CN=olga", "O=ops"]);
    expect(new Date(body.status.expirationTimestamp).toISOString()).toBe(new Date(cert.validTo).toISOString());
    expect(Date.parse(body.status.expirationTimestamp) - Date.now()).toBeLessThanOrEqual(3_600_000);
    olga = { cert: certPem, key: keyPem };
    const self = await withCert(`${PASSES}/olga`, olga);
    expect(self.status).toBe(200);
    expect(self.json.metadata.name).toBe("olga");
    const other = await withCert(`${PASSES}/alice`, olga);
    expect(other.status).toBe(404);
    const pods = await withCert(PODS, olga);
    expect(pods.status).toBe(200);
  });

  test("with its certificate the pass requests another; another pass may not; the CLI wraps it for the admin", async () => {
    const { csrPem } = opensslCsr("olga-2", ["-newkey", "ed25519"], "/CN=olga");
    const again = await withCert(`${PASSES}/olga/certificate`, olga, { method: "POST", body: certificateRequest(csrPem) });
    expect(again.status, again.text).toBe(201);
    const forAlice = await withCert(`${PASSES}/alice/certificate`, olga, { method: "POST", body: certificateRequest(csrPem) });
    expect(forAlice.status).toBe(403);
    expect(forAlice.json.message).toBe('passes.cluster.kpass.dev "alice" is forbidden: User "olga" cannot create resource "passes/certificate" in API group "cluster.kpass.dev" at the cluster scope: pass "olga" may only request certificates for itself');
    const csrFile = join(kpass.dataDir, "olga-2.csr");
    const { stdout, stderr, code } = await cli(["pass", "certificate", "olga", "--csr", csrFile]);
    expect(code, stderr).toBe(0);
    expect(new X509Certificate(stdout).subject).toBe("O=ops\nCN=olga");
    // The CLI also talks to kpass with a certificate kubeconfig: alice renews her own certificate.
    const aliceConfig = await certKubeconfig("alice");
    const renewed = await cli(["pass", "certificate", "alice", "--csr", csrFile, "--ttl", "1h", "--admin-kubeconfig", aliceConfig]);
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(new X509Certificate(renewed.stdout).subject).toBe("O=devs\nCN=alice");
    const notHers = await cli(["pass", "certificate", "olga", "--csr", csrFile, "--admin-kubeconfig", aliceConfig]);
    expect(notHers.code).not.toBe(0);
    expect(notHers.stderr).toContain("Error from server (403)");
  });

  test("a CSR with a bad signature, a weak key (RSA 1024), or no CSR at all is 400; an unknown pass 404", async () => {
    const { csrPem } = opensslCsr("tampered", P256, "/CN=olga");
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
    const at = der.indexOf(Buffer.from("olga"));
    der[at] = "x".charCodeAt(0);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    const bad = await requestCertificate("olga", tampered);
    expect([bad.status, bad.body.reason, bad.body.message]).toEqual([400, "BadRequest", "invalid certificate request: the CSR's signature does not verify with its public key"]);
    const weak = await requestCertificate("olga", opensslCsr("weak", ["-newkey", "rsa:1024"], "/CN=olga").csrPem);
    expect(weak.status).toBe(400);
    expect(weak.body.message).toContain("the key is RSA of 1024 bits");
    const none = await kpass.api("POST", `${PASSES}/olga/certificate`, { kind: "PassCertificateRequest", spec: {} });
    expect(none.status).toBe(400);
    const garbage = await kpass.api("POST", `${PASSES}/olga/certificate`, "{not json");
    expect(garbage.status).toBe(400);
    const unknown = await requestCertificate("nobody-here", csrPem);
    expect(unknown.status).toBe(404);
    // Bad input never takes kpass down.
    expect((await kpass.api("GET", "/healthz")).status).toBe(200);
  });
});

describe("revocation", () => {
  async function certFor(pass: string): Promise<{ cert: string; key: string }> {
    const { csrPem, keyPem } = opensslCsr(pass, P256, `/CN=${pass}`);
    const { status, body } = await requestCertificate(pass, csrPem);
    expect(status, JSON.stringify(body)).toBe(201);
    return { cert: Buffer.from(body.status.certificate, "base64").toString(), key: keyPem };
  }

  async function get(connection: RawTlsConnection, count: number) {
    connection.write(`GET ${PODS} HTTP/1.1\r\nHost: kpass\r\n\r\n`);
    const parsed = await connection.responses(count, 10_000);
    return parsed.responses[count - 1];
  }

  test("deleting the pass makes its certificate useless on an open keep-alive connection and on a new one; re-creating it does not revive it", async () => {
    await createPass(kpass, "kim", { user: "kim", clusters: { names: ["prod"] }, roles: ["view"] });
    const kim = await certFor("kim");
    const open = await RawTlsConnection.open(kpass.url, kpass.caPem, kim);
    try {
      expect((await get(open, 1))?.status).toBe(200);
      expect((await kpass.api("DELETE", `${PASSES}/kim`)).status).toBe(200);
      const after = await get(open, 2);
      expect(after?.status).toBe(401);
      expect(after?.json().message).toBe('Unauthorized: pass "kim" has been revoked');
      expect(open.closed).toBe(false);
      const fresh = await RawTlsConnection.open(kpass.url, kpass.caPem, kim);
      expect((await get(fresh, 1))?.status).toBe(401);
      fresh.close();
      await createPass(kpass, "kim", { user: "kim", clusters: { names: ["prod"] }, roles: ["view"] });
      const recreatedOld = await get(open, 3);
      expect([recreatedOld?.status, recreatedOld?.json().message]).toEqual([401, 'Unauthorized: pass "kim" has been revoked']);
      const recreatedNew = await RawTlsConnection.open(kpass.url, kpass.caPem, kim);
      expect((await get(recreatedNew, 1))?.status).toBe(401);
      recreatedNew.close();
      // A certificate for the re-created pass works.
      expect((await withCert(PODS, await certFor("kim"))).status).toBe(200);
    } finally {
      open.close();
    }
  });

  test("a certificate past its notAfter is 401 even while its pass is valid", async () => {
    // The certificate's life ends with the pass's expiry; the pass is then extended, the certificate is not.
    await createPass(kpass, "lou", { user: "lou", clusters: { names: ["prod"] }, roles: ["view"], expiresAt: new Date(Date.now() + 4000).toISOString() });
    const lou = await certFor("lou");
    const notAfter = Date.parse(new X509Certificate(lou.cert).validTo);
    expect(notAfter).toBeLessThanOrEqual(Date.now() + 4000);
    expect((await kpass.api("PATCH", `${PASSES}/lou`, { spec: { expiresAt: new Date(Date.now() + 3_600_000).toISOString() } }, MERGE)).status).toBe(200);
    // A watch on kpass's own API opened (after the edit) with the certificate ends with it, though the pass goes on.
    const watch = await RawTlsConnection.open(kpass.url, kpass.caPem, lou);
    watch.write(`GET ${PASSES}?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    expect(await watch.waitFor(() => watch.raw().toString("latin1").includes('"ADDED"'))).toBe(true);
    expect(await watch.waitFor(() => watch.raw().toString("latin1").endsWith("\r\n0\r\n\r\n"), 15_000)).toBe(true);
    watch.close();
    const refused = await eventually(async () => {
      const response = await withCert(PODS, lou);
      return response.status === 401 ? response : undefined;
    }, 15_000);
    expect(refused.json.reason).toBe("Unauthorized");
    expect(refused.json.message).toMatch(/^Unauthorized: the client certificate \(serial [0-9A-F]+\) expired at /);
  });

  test("a certificate from a foreign CA is 401 Status; with a token beside it the token decides", async () => {
    const foreignCa = await createCertificateAuthority("kpass-client-ca");
    const foreign = await issueClientCertificate(foreignCa, { commonName: "alice", organizations: ["devs"] });
    const refused = await withCert(PODS, { cert: foreign.certPem, key: foreign.keyPem });
    expect(refused.status).toBe(401);
    expect(refused.json).toMatchObject({ kind: "Status", status: "Failure", reason: "Unauthorized", code: 401, message: "Unauthorized: the client certificate is not signed by kpass's client certificate authority" });
    const api = await withCert(`${PASSES}/alice`, { cert: foreign.certPem, key: foreign.keyPem });
    expect(api.status).toBe(401);
    const withToken = await withCert(PODS, { cert: foreign.certPem, key: foreign.keyPem }, { token: kpass.adminToken });
    expect(withToken.status).toBe(200);
  });
});

describe("audit", () => {
  test("requests made with a certificate carry its serial; every issuance is a line with pass, serial, notAfter and requester", async () => {
    const kubeconfig = await certKubeconfig("alice");
    const serial = new X509Certificate(certOf(kubeconfig).cert).serialNumber;
    const pods = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "--context", "prod", "get", "pods", "-n", "default"]);
    expect(pods.exitCode, pods.stderr).toBe(0);
    const refused = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "--context", "prod", "get", "pods", "-n", "team-a"]);
    expect(refused.exitCode).not.toBe(0);
    let seen: any[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
    const lines = await auditLines(kpass, (all) => {
      seen = all;
      return all.some((l) => l.clientCertificateSerial === serial && l.status === 403) && all.some((l) => l.issuedCertificate?.serial === serial);
    }).catch((error) => {
      throw new Error(`${error}: serial ${serial}; refusals: ${JSON.stringify(seen.filter((l) => l.status >= 400).slice(-4))}; issued: ${JSON.stringify(seen.filter((l) => l.issuedCertificate).slice(-2))}`);
    });
    const mine = lines.filter((l) => l.clientCertificateSerial === serial);
    expect(mine.some((l) => l.pass === "alice" && l.status === 200 && l.resource === "pods" && l.verb === "list")).toBe(true);
    expect(mine.some((l) => l.pass === "alice" && l.status === 403 && l.resource === "pods" && l.namespace === "team-a")).toBe(true);
    const issued = lines.find((l) => l.issuedCertificate?.serial === serial);
    expect(issued).toMatchObject({ pass: "admin", status: 201, resource: "passes", subresource: "certificate", name: "alice", issuedCertificate: { pass: "alice", serial } });
    expect(Date.parse(issued.issuedCertificate.notAfter)).toBe(Date.parse(new X509Certificate(certOf(kubeconfig).cert).validTo));
    // Token requests carry no serial; no line carries a private key.
    expect(lines.filter((l) => l.pass === "admin" && l.cluster === "prod").every((l) => l.clientCertificateSerial === undefined)).toBe(true);
    expect(JSON.stringify(lines)).not.toContain("PRIVATE KEY");
  });
});
