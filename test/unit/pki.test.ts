import { describe, expect, test } from "bun:test";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueClientCertificate, issueServingCertificate } from "../../src/edge/pki.ts";

const ca = await createCertificateAuthority("kpass-test-ca");
const serving = await issueServingCertificate(ca, {
  commonName: "kpass",
  dnsNames: ["localhost", "kpass.example"],
  ipAddresses: ["127.0.0.1", "::1"],
});
const client = await issueClientCertificate(ca, { commonName: "alice", organizations: ["system:masters", "team-a"] });

const caCert = new X509Certificate(ca.certPem);
const servingCert = new X509Certificate(serving.certPem);
const clientCert = new X509Certificate(client.certPem);

function extensionsText(pem: string): string {
  const proc = Bun.spawnSync(["openssl", "x509", "-noout", "-text"], { stdin: new TextEncoder().encode(pem) });
  if (proc.exitCode !== 0) throw new Error(proc.stderr.toString());
  return proc.stdout.toString();
}

describe("pki", () => {
  test("CA is a self-signed CA with the requested name", () => {
    expect(caCert.ca).toBe(true);
    expect(caCert.subject).toBe("CN=kpass-test-ca");
    expect(caCert.checkIssued(caCert)).toBe(true);
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    const text = extensionsText(ca.certPem);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+[^\n]*Certificate Sign, CRL Sign/);
    expect(text).toContain("Subject Key Identifier");
  });

  test("keys are PKCS#8 P-256 and match their certificates", () => {
    for (const pair of [ca, serving, client]) {
      expect(pair.keyPem.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
      const key = createPrivateKey(pair.keyPem);
      expect(key.asymmetricKeyType).toBe("ec");
      expect(key.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
      const derived = createPublicKey(key).export({ format: "der", type: "spki" });
      const inCert = new X509Certificate(pair.certPem).publicKey.export({ format: "der", type: "spki" });
      expect(Buffer.compare(derived, inCert)).toBe(0);
    }
  });

  test("serving certificate: SANs, serverAuth, signed by the CA", () => {
    expect(servingCert.ca).toBe(false);
    expect(servingCert.subject).toBe("CN=kpass");
    expect(servingCert.subjectAltName).toBe("DNS:localhost, DNS:kpass.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    expect(servingCert.checkIssued(caCert)).toBe(true);
    expect(servingCert.verify(caCert.publicKey)).toBe(true);
    expect(servingCert.checkHost("kpass.example")).toBe("kpass.example");
    expect(servingCert.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(servingCert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    const text = extensionsText(serving.certPem);
    expect(text).toContain("Authority Key Identifier");
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature/);
  });

  test("client certificate: CN and one O per organization, clientAuth, signed by the CA", () => {
    expect(clientCert.subject.split("\n").sort()).toEqual(["CN=alice", "O=system:masters", "O=team-a"]);
    expect(clientCert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(clientCert.subjectAltName).toBeUndefined();
    expect(clientCert.verify(caCert.publicKey)).toBe(true);
  });

  test("serials are positive and random, validity is backdated and honours validDays", async () => {
    const other = await issueClientCertificate(ca, { commonName: "bob", validDays: 2 });
    const otherCert = new X509Certificate(other.certPem);
    for (const cert of [caCert, servingCert, clientCert, otherCert]) {
      expect(cert.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
      expect(new Date(cert.validFrom).getTime()).toBeLessThan(Date.now() - 60_000);
    }
    expect(new Set([caCert, servingCert, clientCert, otherCert].map((c) => c.serialNumber)).size).toBe(4);
    const lifetime = new Date(otherCert.validTo).getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(1.9 * 86_400_000);
    expect(lifetime).toBeLessThan(2.1 * 86_400_000);
  });

  test("openssl verifies the chain for the right purposes only", () => {
    const dir = mkdtempSync(join(tmpdir(), "kpass-pki-test-"));
    try {
      writeFileSync(join(dir, "ca.crt"), ca.certPem);
      writeFileSync(join(dir, "serving.crt"), serving.certPem);
      writeFileSync(join(dir, "client.crt"), client.certPem);
      const verify = (purpose: string, file: string) =>
        Bun.spawnSync(["openssl", "verify", "-CAfile", join(dir, "ca.crt"), "-purpose", purpose, join(dir, file)]).exitCode;
      expect(verify("sslserver", "serving.crt")).toBe(0);
      expect(verify("sslclient", "client.crt")).toBe(0);
      expect(verify("sslserver", "client.crt")).not.toBe(0);
      expect(verify("sslclient", "serving.crt")).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a certificate from another CA does not verify", async () => {
    const other = await createCertificateAuthority("other-ca");
    expect(servingCert.verify(new X509Certificate(other.certPem).publicKey)).toBe(false);
    expect(servingCert.checkIssued(new X509Certificate(other.certPem))).toBe(false);
  });

  test("refuses to issue from a non-CA certificate", async () => {
    await expect(issueClientCertificate(serving, { commonName: "x" })).rejects.toThrow(/not a CA/);
  });

  test("Bun TLS (Bun.serve with required client cert, fetch with ca/cert/key) accepts the PEMs", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: serving.certPem, key: serving.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
      fetch: () => new Response("hello"),
    });
    try {
      const ok = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.certPem, cert: client.certPem, key: client.keyPem } });
      expect(await ok.text()).toBe("hello");
      const viaName = await fetch(`https://localhost:${server.port}/`, { tls: { ca: ca.certPem, cert: client.certPem, key: client.keyPem } });
      expect(viaName.status).toBe(200);
      await expect(fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.certPem } })).rejects.toThrow();
    } finally {
      server.stop(true);
    }
  });
});
