import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { runKubectl } from "./harness/kubectl.ts";
import { removeDataDir, startKpass } from "./harness/kpass.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDataDir));

describe("kpass serve", () => {
  test("first start creates the data directory, CA, serving certificate, signing key and admin kubeconfig; later starts reuse them", async () => {
    const kpass = await startKpass({ args: ["--san", "kpass.example.test", "--san", "10.9.8.7"] });
    dirs.push(kpass.dataDir);
    expect(kpass.stderr()).toContain(`admin kubeconfig: ${kpass.adminKubeconfig}`);
    for (const secret of ["ca.key", "serving.key", "token-signing.jwk", "admin.kubeconfig"]) {
      expect(statSync(join(kpass.dataDir, secret)).mode & 0o777).toBe(0o600);
    }
    const serving = new X509Certificate(readFileSync(join(kpass.dataDir, "serving.crt")));
    const ca = new X509Certificate(readFileSync(join(kpass.dataDir, "ca.crt")));
    expect(serving.verify(ca.publicKey)).toBe(true);
    for (const name of ["DNS:localhost", "IP Address:127.0.0.1", `DNS:${hostname()}`, "DNS:kpass.example.test", "IP Address:10.9.8.7"]) {
      expect(serving.subjectAltName).toContain(name);
    }
    const config = parse(readFileSync(kpass.adminKubeconfig, "utf8"));
    expect(config.clusters[0].cluster.server).toBe(kpass.url);
    const version = await runKubectl("1.33", ["--kubeconfig", kpass.adminKubeconfig, "version", "-o", "json"]);
    expect(JSON.parse(version.stdout).serverVersion.gitVersion).toContain("kpass");
    await kpass.stop();

    const again = await startKpass({ dataDir: kpass.dataDir, args: ["--san", "kpass.example.test", "--san", "10.9.8.7"] });
    expect(readFileSync(join(kpass.dataDir, "ca.crt"), "utf8")).toBe(ca.toString());
    expect(new X509Certificate(readFileSync(join(kpass.dataDir, "serving.crt"))).serialNumber).toBe(serving.serialNumber);
    const passes = await (await again.api("GET", "/apis/cluster.kpass.dev/v1beta1/passes")).json();
    expect(passes.items.map((p: { metadata: { name: string } }) => p.metadata.name)).toEqual(["admin"]);
    const clusters = await runKubectl("1.27", ["--kubeconfig", again.adminKubeconfig, "get", "clusters"]);
    expect(clusters.exitCode).toBe(0);
    await again.stop();
  });

  test("a serving certificate and CA supplied by flags are used as given", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kpass-test-certs-"));
    dirs.push(dir);
    const ca = await createCertificateAuthority("corporate-ca");
    const serving = await issueServingCertificate(ca, { commonName: "kpass", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    writeFileSync(join(dir, "ca.crt"), ca.certPem);
    writeFileSync(join(dir, "tls.crt"), serving.certPem);
    writeFileSync(join(dir, "tls.key"), serving.keyPem);
    const kpass = await startKpass({ args: ["--tls-cert", join(dir, "tls.crt"), "--tls-key", join(dir, "tls.key"), "--ca-cert", join(dir, "ca.crt")] });
    dirs.push(kpass.dataDir);
    const config = parse(readFileSync(kpass.adminKubeconfig, "utf8"));
    expect(Buffer.from(config.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toBe(ca.certPem);
    const got = await runKubectl("1.33", ["--kubeconfig", kpass.adminKubeconfig, "get", "passes", "-o", "name"]);
    expect(got.stdout.trim()).toBe("pass.cluster.kpass.dev/admin");
    await kpass.stop();
  });
});
