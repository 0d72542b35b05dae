/**
 * SIGTERM and SIGHUP as an SRE expects them of a gateway: on SIGTERM kpass turns unready, stops
 * accepting, ends watches, answers the REST request in flight, closes tunnels last, flushes the
 * audit log and exits 0; on SIGHUP new handshakes get the new serving certificate while open
 * connections carry on.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { startRawCluster, type RawCluster } from "./fixture/raw-cluster.ts";
import type { TestCluster } from "./fixture/cluster/server.ts";
import { clusterManifest, eventually, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";
import { RawTlsConnection } from "./harness/raw-tls.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const PROXY = `${CLUSTERS}/a/proxy`;
const WS = ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: v5.channel.k8s.io"];

const started: { kpass?: KpassProcess; cluster?: RawCluster }[] = [];
afterAll(async () => {
  for (const s of started) {
    await s.kpass?.stop();
    await s.cluster?.stop();
    if (s.kpass) removeDataDir(s.kpass.dataDir);
  }
});

function request(method: string, target: string, token: string, extra: string[] = []): string {
  return [`${method} ${target} HTTP/1.1`, "Host: localhost", `Authorization: Bearer ${token}`, ...extra, "", ""].join("\r\n");
}

/** Whether a new TCP+TLS connection to kpass is accepted. */
async function accepts(kpass: KpassProcess): Promise<boolean> {
  try {
    const c = await RawTlsConnection.open(kpass.url, kpass.caPem, { timeoutMs: 2000 });
    c.close();
    return true;
  } catch {
    return false;
  }
}

describe("SIGTERM", () => {
  test("unready first; the request in flight is answered, watches end, tunnels close last, audit flushed, exit 0", async () => {
    const cluster = await startRawCluster({ name: "a", token: "a-token" });
    const kpass = await startKpass({ args: ["--audit", "file", "--shutdown-grace", "10s", "--shutdown-delay", "1s"] });
    started.push({ kpass, cluster });
    expect((await kpass.api("POST", CLUSTERS, clusterManifest("a", cluster as unknown as TestCluster, { token: "a-token" }))).status).toBe(201);
    const token = kpass.adminToken;
    const events: string[] = [];

    // A watch on kpass's own API, an exec tunnel, and a REST request the cluster answers slowly.
    const watch = await RawTlsConnection.open(kpass.url, kpass.caPem);
    watch.write(request("GET", `${CLUSTERS}?watch=1`, token));
    expect(await watch.waitFor(() => watch.raw().toString("latin1").includes('"ADDED"'))).toBe(true);
    void watch.waitClosed(30_000).then(() => events.push("watch ended"));
    const tunnel = await RawTlsConnection.open(kpass.url, kpass.caPem);
    tunnel.write(request("GET", `${PROXY}/api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true`, token, WS));
    expect((await tunnel.responses(1)).responses[0]?.status).toBe(101);
    void tunnel.waitClosed(30_000).then(() => events.push("tunnel closed"));
    const slow = await RawTlsConnection.open(kpass.url, kpass.caPem);
    slow.write(request("GET", `${PROXY}/fault/slow-head?ms=2500`, token));
    await eventually(() => (cluster.requests.some((r) => r.target.startsWith("/fault/slow-head")) ? true : undefined));

    kpass.signal("SIGTERM");
    // Unready while it still serves (--shutdown-delay), so a load balancer stops sending first.
    await eventually(async () => {
      const r = await fetch(`${kpass.url}/readyz`, { tls: { ca: kpass.caPem } }).catch(() => undefined);
      return r?.status === 503 ? true : undefined;
    }, 5000);
    // Then no new connection is accepted.
    await eventually(async () => ((await accepts(kpass)) ? undefined : true), 10_000);

    const answered = await slow.responses(1, 15_000);
    events.push("slow answered");
    expect(answered.responses[0]?.status).toBe(200);
    // It was the last request on its connection.
    expect(answered.responses[0]?.header("connection")).toBe("close");
    expect(await kpass.exited).toBe(0);
    expect(await watch.waitClosed(1000)).toBe(true);
    expect(await tunnel.waitClosed(1000)).toBe(true);
    // Tunnels close last: after the REST request was answered; watches end before it.
    expect(events.indexOf("tunnel closed")).toBeGreaterThan(events.indexOf("slow answered"));
    expect(events.indexOf("watch ended")).toBeLessThan(events.indexOf("slow answered"));
    const audit = readFileSync(join(kpass.dataDir, "audit.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { path: string; status: number });
    expect(audit.some((l) => l.path.startsWith("/fault/slow-head") && l.status === 200)).toBe(true);
    expect(audit.some((l) => l.path.includes("/exec") && l.status === 101)).toBe(true);
  }, 60_000);

  test("a Cluster written just before SIGTERM is there after a restart", async () => {
    const cluster = await startRawCluster({ name: "a", token: "a-token" });
    const kpass = await startKpass({ args: ["--shutdown-grace", "2s"] });
    started.push({ kpass, cluster });
    expect((await kpass.api("POST", CLUSTERS, clusterManifest("kept", cluster as unknown as TestCluster, { token: "a-token" }))).status).toBe(201);
    kpass.signal("SIGTERM");
    expect(await kpass.exited).toBe(0);
    const again = await startKpass({ dataDir: kpass.dataDir });
    started.push({ kpass: again });
    expect((await again.api("GET", `${CLUSTERS}/kept`)).status).toBe(200);
  }, 60_000);
});

describe("SIGHUP", () => {
  function servingSerial(kpass: KpassProcess, ca: string): Promise<string> {
    const { hostname, port } = new URL(kpass.url);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port), ca, servername: "localhost" }, () => {
        const serial = new X509Certificate(socket.getPeerX509Certificate()!.raw).serialNumber;
        socket.destroy();
        resolve(serial);
      });
      socket.once("error", reject);
    });
  }

  test("new handshakes see the new certificate; an open keep-alive connection keeps working", async () => {
    const ca = await createCertificateAuthority("shutdown-test-ca");
    const names = { commonName: "kpass", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] };
    const [first, second] = [await issueServingCertificate(ca, names), await issueServingCertificate(ca, names)];
    const cluster = await startRawCluster({ name: "a", token: "a-token" });
    const dir = (await startKpass({ args: [] }).then(async (k) => (await k.stop(), k.dataDir)));
    const certFile = join(dir, "serving-override.crt");
    const keyFile = join(dir, "serving-override.key");
    const caFile = join(dir, "serving-override-ca.crt");
    writeFileSync(certFile, first.certPem);
    writeFileSync(keyFile, first.keyPem, { mode: 0o600 });
    writeFileSync(caFile, ca.certPem);
    const kpass = await startKpass({ dataDir: dir, args: ["--tls-cert", certFile, "--tls-key", keyFile, "--ca-cert", caFile] });
    started.push({ kpass, cluster });
    const firstSerial = new X509Certificate(first.certPem).serialNumber;
    const secondSerial = new X509Certificate(second.certPem).serialNumber;
    expect(await servingSerial(kpass, ca.certPem)).toBe(firstSerial);

    const open = await RawTlsConnection.open(kpass.url, ca.certPem);
    open.write(request("GET", "/version", kpass.adminToken));
    expect((await open.responses(1)).responses[0]?.status).toBe(200);

    writeFileSync(certFile, second.certPem);
    writeFileSync(keyFile, second.keyPem, { mode: 0o600 });
    kpass.signal("SIGHUP");
    await eventually(() => (kpass.stderr().includes("serving certificate reloaded\n") ? true : undefined));
    expect(await servingSerial(kpass, ca.certPem)).toBe(secondSerial);
    open.write(request("GET", "/version", kpass.adminToken));
    const again = await open.responses(2);
    expect(again.responses[1]?.status).toBe(200);
    expect(open.closed).toBe(false);

    // A broken certificate, or a key of another certificate, is refused and the current one stays.
    writeFileSync(certFile, "not a certificate");
    kpass.signal("SIGHUP");
    await eventually(() => (kpass.stderr().includes("not reloaded") ? true : undefined));
    expect(kpass.stderr()).toContain("the serving certificate does not parse");
    expect(await servingSerial(kpass, ca.certPem)).toBe(secondSerial);
    writeFileSync(certFile, first.certPem);
    kpass.signal("SIGHUP");
    await eventually(() => (kpass.stderr().includes("does not belong to the serving certificate") ? true : undefined));
    expect(await servingSerial(kpass, ca.certPem)).toBe(secondSerial);

    // Files rewritten the way cert-manager does it (a new file renamed over the old), no signal:
    // taken up all the same.
    const third = await issueServingCertificate(ca, names);
    writeFileSync(`${keyFile}.new`, third.keyPem, { mode: 0o600 });
    renameSync(`${keyFile}.new`, keyFile);
    writeFileSync(`${certFile}.new`, third.certPem);
    renameSync(`${certFile}.new`, certFile);
    const thirdSerial = new X509Certificate(third.certPem).serialNumber;
    await eventually(async () => ((await servingSerial(kpass, ca.certPem)) === thirdSerial ? true : undefined), 10_000);
    expect(kpass.stderr()).toContain("serving certificate reloaded (files changed)");
  }, 60_000);
});

describe("SIGHUP with a config file", () => {
  test("the stream limit and log settings change at once; what needs a restart is named", async () => {
    const cluster = await startRawCluster({ name: "a", token: "a-token" });
    const dir = mkdtempSync(join(tmpdir(), "kpass-reload-"));
    const file = join(dir, "config.yaml");
    writeFileSync(file, "maxStreamsPerPass: 1\nidleTimeout: 2m\n");
    const kpass = await startKpass({ args: ["--config", file] });
    started.push({ kpass, cluster });
    const watchCount = async () => {
      const c = await RawTlsConnection.open(kpass.url, kpass.caPem);
      c.write(request("GET", `${CLUSTERS}?watch=1`, kpass.adminToken));
      // A watch's response never completes: its status line is what tells.
      await c.waitFor(() => /^HTTP\/1\.1 \d{3}/.test(c.raw().toString("latin1")));
      return { c, status: Number(c.raw().toString("latin1").slice(9, 12)) };
    };
    const first = await watchCount();
    expect(first.status).toBe(200);
    const refused = await watchCount();
    expect(refused.status).toBe(429);
    writeFileSync(file, "maxStreamsPerPass: 2\nidleTimeout: 5m\n");
    kpass.signal("SIGHUP");
    await eventually(() => (kpass.stderr().includes("config reloaded: maxStreamsPerPass changed") ? true : undefined));
    expect(kpass.stderr()).toContain("idleTimeout changed, which takes effect at the next start");
    const second = await watchCount();
    expect(second.status).toBe(200);
    // A file that no longer loads changes nothing.
    writeFileSync(file, "maxStreamsPerPass: lots\n");
    kpass.signal("SIGHUP");
    await eventually(() => (kpass.stderr().includes("config not reloaded") ? true : undefined));
    expect((await watchCount()).status).toBe(429);
    for (const w of [first, refused, second]) w.c.close();
    removeDataDir(dir);
  }, 60_000);
});

describe("SIGTERM with a watch through a cluster", () => {
  test("the proxied watch ends as a complete response (the last chunk), so clients re-watch at once", async () => {
    const { startTestCluster } = await import("./fixture/cluster/server.ts");
    const cluster = await startTestCluster({ credential: { type: "token", token: "w-token" } });
    const kpass = await startKpass({ args: ["--shutdown-grace", "2s"] });
    started.push({ kpass });
    try {
      expect((await kpass.api("POST", CLUSTERS, clusterManifest("w", cluster, { token: "w-token" }))).status).toBe(201);
      const watch = await RawTlsConnection.open(kpass.url, kpass.caPem);
      watch.write(request("GET", `${CLUSTERS}/w/proxy/api/v1/namespaces/default/configmaps?watch=true`, kpass.adminToken));
      expect(await watch.waitFor(() => watch.raw().toString("latin1").includes('"ADDED"'))).toBe(true);
      kpass.signal("SIGTERM");
      expect(await kpass.exited).toBe(0);
      await watch.waitClosed(5000);
      const text = watch.raw().toString("latin1");
      expect(text).toContain("Transfer-Encoding: chunked");
      expect(text.endsWith("\r\n0\r\n\r\n")).toBe(true);
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
