/** kpass on an etcd that speaks only TLS and demands a client certificate (--etcd-cafile/certfile/keyfile). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueClientCertificate, issueServingCertificate } from "../src/edge/pki.ts";
import { newKeyLine } from "../src/store/encryption.ts";
import { etcdAvailable, startEtcd, type EtcdProcess } from "./harness/etcd.ts";
import { startKpass, type KpassProcess } from "./harness/kpass.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const dir = mkdtempSync(join(tmpdir(), "kpass-etcd-tls-"));
let etcd: EtcdProcess | undefined;
const started: KpassProcess[] = [];
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text, { mode: 0o600 });
  return join(dir, name);
};

beforeAll(async () => {
  if (!etcdAvailable()) return;
  const ca = await createCertificateAuthority("etcd-test-ca");
  // etcd 3.4's gateway dials its own gRPC port with the serving certificate: with
  // --client-cert-auth that certificate must allow clientAuth too (etcd's documented requirement).
  const serving = await issueServingCertificate(ca, { commonName: "etcd", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], alsoClient: true });
  const client = await issueClientCertificate(ca, { commonName: "kpass" });
  file("ca.crt", ca.certPem);
  file("server.crt", serving.certPem);
  file("server.key", serving.keyPem);
  file("client.crt", client.certPem);
  file("client.key", client.keyPem);
  file("encryption.key", `${newKeyLine()}\n`);
  etcd = await startEtcd({ tls: { certFile: join(dir, "server.crt"), keyFile: join(dir, "server.key"), trustedCaFile: join(dir, "ca.crt"), client } });
});

afterAll(async () => {
  await Promise.allSettled(started.map((k) => k.stop()));
  await etcd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const storeArgs = () => ["--store", "etcd", "--etcd-endpoints", etcd!.endpoint, "--encryption-key-file", join(dir, "encryption.key")];

describe.skipIf(!etcdAvailable())("etcd over TLS with client certificates", () => {
  test("with the CA and a client certificate: two replicas share a Cluster", async () => {
    const tls = ["--etcd-cafile", join(dir, "ca.crt"), "--etcd-certfile", join(dir, "client.crt"), "--etcd-keyfile", join(dir, "client.key")];
    const a = await startKpass({ args: [...storeArgs(), ...tls] });
    started.push(a);
    const b = await startKpass({ args: [...storeArgs(), ...tls] });
    started.push(b);
    const manifest = { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name: "over-tls" }, spec: { access: { endpoint: "https://127.0.0.1:1", credential: { type: "ServiceAccountToken", serviceAccountToken: "t" } } } };
    expect((await a.api("POST", CLUSTERS, manifest)).status).toBe(201);
    const seen = await b.api("GET", `${CLUSTERS}/over-tls`, undefined, { token: a.adminToken });
    expect(seen.status).toBe(200);
  });

  test("without a client certificate, or without etcd's CA: kpass does not start, and says why", async () => {
    await expect(startKpass({ args: [...storeArgs(), "--etcd-cafile", join(dir, "ca.crt")] })).rejects.toThrow(/--store etcd: cannot read \/kpass\/ from https:\/\/127\.0\.0\.1:\d+: etcd unavailable/);
    await expect(startKpass({ args: storeArgs() })).rejects.toThrow(/unable to verify the first certificate|self.signed|certificate/);
  });

  test("--etcd-certfile without --etcd-keyfile is refused before anything starts", async () => {
    await expect(startKpass({ args: [...storeArgs(), "--etcd-cafile", join(dir, "ca.crt"), "--etcd-certfile", join(dir, "client.crt")] })).rejects.toThrow("--etcd-certfile and --etcd-keyfile must be given together");
  });
});
