/**
 * Pass client certificates without a server: CSRs made by openssl (every accepted and refused key
 * type, a broken signature), what kpass puts into the certificate it issues, the lifetime rule,
 * the chain check against the client CA (a foreign CA with the very same name is not it), and
 * authentication by certificate against a real ObjectStore (delete, re-create, expiry, token wins).
 */
import { FileSecrets } from "../../src/store/secrets.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Authenticator } from "../../src/auth/authenticate.ts";
import { certificateNotAfter, readCertificateRequest, readExpirationSeconds } from "../../src/auth/certificate-request.ts";
import { ClientCertificateAuthority, parsePassUri, passUri } from "../../src/auth/client-certificates.ts";
import { authorizeCertificate } from "../../src/auth/kpass-access.ts";
import { OpenStreams } from "../../src/auth/open-streams.ts";
import type { Identity } from "../../src/auth/identity.ts";
import { loadOrCreateSigningKey } from "../../src/auth/signing-key.ts";
import { TokenService } from "../../src/auth/tokens.ts";
import { API_VERSION } from "../../src/core/api-group.ts";
import type { Pass, PassSpec } from "../../src/core/pass.ts";
import type { ClientCertificate } from "../../src/core/request-context.ts";
import { ApiError } from "../../src/core/status.ts";
import { createCertificateAuthority, issueClientCertificate, type CertificateAndKey } from "../../src/edge/pki.ts";
import { MemoryPersistence } from "../harness/memory-persistence.ts";
import { ObjectStore } from "../../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../../src/store/local-backend.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-client-certs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A key and CSR made by openssl, as a user would (`subject` is what the CSR claims). */
function opensslCsr(name: string, keyArgs: string[], subject = "/CN=alice"): { csrPem: string; keyPem: string } {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const proc = Bun.spawnSync(["openssl", "req", "-new", ...keyArgs, "-nodes", "-keyout", keyPath, "-subj", subject, "-out", csrPath], { stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(`openssl req failed: ${proc.stderr.toString()}`);
  return { csrPem: readFileSync(csrPath, "utf8"), keyPem: readFileSync(keyPath, "utf8") };
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

async function refusalOf(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected a refusal");
}

function derOf(pem: string): ClientCertificate {
  const cert = new X509Certificate(pem);
  return { der: new Uint8Array(cert.raw), serial: cert.serialNumber };
}

let caPair: CertificateAndKey;
let ca: ClientCertificateAuthority;
let passes: ObjectStore<Pass>;
let tokens: TokenService;
let authenticator: Authenticator;
let p256: { csrPem: string; keyPem: string };

beforeAll(async () => {
  caPair = await createCertificateAuthority("kpass-client-ca");
  ca = await ClientCertificateAuthority.fromPair(caPair);
  passes = new ObjectStore<Pass>("passes", new LocalBackend("passes", new RevisionClock(), new MemoryPersistence()));
  tokens = new TokenService(await loadOrCreateSigningKey(new FileSecrets(dir), "signing.jwk"));
  authenticator = new Authenticator(tokens, passes, undefined, ca);
  p256 = opensslCsr("p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "/CN=admin/O=system:masters");
});

function passObject(name: string, spec: PassSpec): Pass {
  return { apiVersion: API_VERSION, kind: "Pass", metadata: { name }, spec } as Pass;
}

async function issueFor(pass: Pass, csrPem = p256.csrPem, notAfter = new Date(Date.now() + 3_600_000)) {
  return ca.issue(pass, await readCertificateRequest(b64(csrPem)), notAfter);
}

describe("the client CA on disk", () => {
  test("created on first start with its key 0600, reused afterwards", async () => {
    const data = join(dir, "data");
    Bun.spawnSync(["mkdir", "-p", data]);
    const first = await ClientCertificateAuthority.loadOrCreate(new FileSecrets(data));
    expect(statSync(join(data, "client-ca.key")).mode & 0o777).toBe(0o600);
    expect(new X509Certificate(first.certPem).ca).toBe(true);
    const second = await ClientCertificateAuthority.loadOrCreate(new FileSecrets(data));
    expect(second.certPem).toBe(first.certPem);
  });
});

describe("CSRs", () => {
  for (const [name, args] of [
    ["P-256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]],
    ["P-384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]],
    ["Ed25519", ["-newkey", "ed25519"]],
    ["RSA 2048", ["-newkey", "rsa:2048"]],
  ] as const) {
    test(`${name} keys are accepted`, async () => {
      const { csrPem } = opensslCsr(name.replace(/\W/g, ""), [...args]);
      const key = await readCertificateRequest(b64(csrPem));
      expect(key.rawData.byteLength).toBeGreaterThan(0);
    });
  }

  for (const [name, args, why] of [
    ["RSA 1024", ["-newkey", "rsa:1024"], "the key is RSA of 1024 bits"],
    ["P-521", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "the key is ECDSA P-521"],
  ] as const) {
    test(`${name} keys are refused with 400`, async () => {
      const { csrPem } = opensslCsr(name.replace(/\W/g, ""), [...args]);
      const error = await refusalOf(readCertificateRequest(b64(csrPem)));
      expect(error.code).toBe(400);
      expect(error.message).toStartWith(`invalid certificate request: ${why}; accepted keys are`);
    });
  }

  test("a CSR whose signature does not verify is 400", async () => {
    const der = Buffer.from(p256.csrPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
    // The subject is signed: change one of its bytes and the signature no longer matches.
    const at = der.indexOf(Buffer.from("admin"));
    expect(at).toBeGreaterThan(0);
    der[at] = "b".charCodeAt(0);
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    const error = await refusalOf(readCertificateRequest(b64(pem)));
    expect(error.code).toBe(400);
    expect(error.message).toBe("invalid certificate request: the CSR's signature does not verify with its public key");
  });

  test("garbage, a certificate instead of a CSR, truncated DER, and no string at all are 400", async () => {
    const cert = await issueClientCertificate(caPair, { commonName: "x" });
    const truncated = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(p256.csrPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64").subarray(0, 40).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    for (const bad of ["", "!!!", b64("hello"), b64(cert.certPem), b64(truncated), 42, undefined, { a: 1 }]) {
      const error = await refusalOf(readCertificateRequest(bad));
      expect(error.code).toBe(400);
      expect(error.message).toStartWith("invalid certificate request: ");
    }
  });

  test("expirationSeconds: absent, or an integer of at least 600", () => {
    expect(readExpirationSeconds(undefined)).toBeUndefined();
    expect(readExpirationSeconds(3600)).toBe(3600);
    for (const bad of [599, 1.5, "3600", -1]) expect(() => readExpirationSeconds(bad)).toThrow(ApiError);
  });

  test("lifetime = min(requested, --max-cert-ttl, pass expiry), whole seconds", () => {
    const now = Date.parse("2026-01-01T00:00:00.500Z");
    const day = 24 * 3_600_000;
    expect(certificateNotAfter(now, undefined, day, undefined).toISOString()).toBe("2026-01-02T00:00:00.000Z");
    expect(certificateNotAfter(now, 3600, day, undefined).toISOString()).toBe("2026-01-01T01:00:00.000Z");
    expect(certificateNotAfter(now, 7 * 86400, day, undefined).toISOString()).toBe("2026-01-02T00:00:00.000Z");
    expect(certificateNotAfter(now, 7200, day, "2026-01-01T00:30:00Z").toISOString()).toBe("2026-01-01T00:30:00.000Z");
  });
});

describe("issued certificates", () => {
  test("kpass decides the subject: CN = user, O = groups, one SAN URI naming the pass; clientAuth only; the CSR's CN is ignored", async () => {
    const pass = await passes.create(passObject("subject-pass", { user: "alice@example.com", groups: ["devs", "ops"] }));
    const issued = await issueFor(pass);
    const cert = new X509Certificate(issued.certPem);
    expect(cert.subject.split("\n").sort()).toEqual(["CN=alice@example.com", "O=devs", "O=ops"]);
    expect(cert.subject).not.toContain("system:masters");
    expect(cert.subjectAltName).toBe(`URI:${passUri("subject-pass", pass.metadata.uid)}`);
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(cert.ca).toBe(false);
    expect(cert.serialNumber).toBe(issued.serial);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    // The certificate holds the CSR's key, so the private key that made the CSR goes with it.
    expect(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(p256.keyPem))).toBe(true);
  });

  test("pass URIs round-trip and nothing else parses as one", () => {
    expect(parsePassUri(passUri("a.b-c", "1234-abcd"))).toEqual({ name: "a.b-c", uid: "1234-abcd" });
    for (const other of ["urn:kpass:pass:", "urn:kpass:pass:alice", "urn:kpass:pass:alice:", "urn:other:alice:1", "https://x"]) expect(parsePassUri(other)).toBeUndefined();
  });
});

describe("authentication by certificate", () => {
  const noToken = new Headers();

  test("a certificate of kpass's CA authenticates as its pass, with its serial", async () => {
    const pass = await passes.create(passObject("cert-ok", { user: "carol", groups: ["qa"] }));
    const issued = await issueFor(pass);
    const result = await authenticator.authenticateRequest(noToken, derOf(issued.certPem));
    expect(result.identity.pass).toBe("cert-ok");
    expect(result.identity.user).toBe("carol");
    expect(result.certificate?.serial).toBe(issued.serial);
  });

  test("a bearer token wins over a certificate", async () => {
    const certPass = await passes.create(passObject("cert-loses", { user: "dave" }));
    const tokenPass = await passes.create(passObject("token-wins", { user: "erin" }));
    const issued = await issueFor(certPass);
    const token = await tokens.mint(tokenPass.metadata.name, tokenPass.metadata.uid);
    const result = await authenticator.authenticateRequest(new Headers({ authorization: `Bearer ${token}` }), derOf(issued.certPem));
    expect(result.identity.pass).toBe("token-wins");
    expect(result.certificate).toBeUndefined();
  });

  test("deleting the pass revokes the certificate on the next request, and re-creating it does not revive it", async () => {
    const pass = await passes.create(passObject("cert-revoked", { user: "frank" }));
    const certificate = derOf((await issueFor(pass)).certPem);
    expect((await authenticator.authenticate(noToken, certificate)).pass).toBe("cert-revoked");
    await passes.delete("cert-revoked");
    const deleted = await refusalOf(authenticator.authenticate(noToken, certificate));
    expect([deleted.code, deleted.message]).toEqual([401, 'Unauthorized: pass "cert-revoked" has been revoked']);
    await passes.create(passObject("cert-revoked", { user: "frank" }));
    const recreated = await refusalOf(authenticator.authenticate(noToken, certificate));
    expect([recreated.code, recreated.message]).toEqual([401, 'Unauthorized: pass "cert-revoked" has been revoked']);
  });

  test("an expired certificate and an expired pass are 401 saying so", async () => {
    const pass = await passes.create(passObject("cert-expired", { user: "gina" }));
    const expired = await issueFor(pass, p256.csrPem, new Date(Date.now() - 2000));
    const error = await refusalOf(authenticator.authenticate(noToken, derOf(expired.certPem)));
    expect(error.code).toBe(401);
    expect(error.message).toMatch(new RegExp(`^Unauthorized: the client certificate \\(serial ${expired.serial}\\) expired at `));
    const valid = derOf((await issueFor(pass)).certPem);
    await passes.update("cert-expired", (current) => ({ ...current, spec: { ...current.spec, expiresAt: new Date(Date.now() - 1000).toISOString() } }));
    const passExpired = await refusalOf(authenticator.authenticate(noToken, valid));
    expect(passExpired.message).toStartWith('Unauthorized: pass "cert-expired" expired at ');
  });

  test("a foreign CA of the very same name, a kpass-CA certificate naming no pass, and garbage are 401", async () => {
    const pass = await passes.create(passObject("cert-forged", { user: "hank" }));
    const impostor = await ClientCertificateAuthority.fromPair(await createCertificateAuthority("kpass-client-ca"));
    const forged = await impostor.issue(pass, await readCertificateRequest(b64(p256.csrPem)), new Date(Date.now() + 3_600_000));
    const foreign = await refusalOf(authenticator.authenticate(noToken, derOf(forged.certPem)));
    expect([foreign.code, foreign.message]).toEqual([401, "Unauthorized: the client certificate is not signed by kpass's client certificate authority"]);
    const plain = await issueClientCertificate(caPair, { commonName: "hank" });
    const unnamed = await refusalOf(authenticator.authenticate(noToken, derOf(plain.certPem)));
    expect([unnamed.code, unnamed.message]).toEqual([401, "Unauthorized: the client certificate does not name exactly one kpass pass"]);
    const garbage = await refusalOf(authenticator.authenticate(noToken, { der: new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]), serial: "01" }));
    expect(garbage.code).toBe(401);
  });

  test("a certificate is verified once per connection object, the pass on every request", async () => {
    const pass = await passes.create(passObject("cert-once", { user: "ivy" }));
    const certificate = derOf((await issueFor(pass)).certPem);
    const first = ca.check(certificate);
    expect(ca.check(certificate)).toBe(first);
    expect((await first).ok).toBe(true);
  });
});

describe("streams opened with a certificate", () => {
  test("end when the certificate expires; a stream of the same pass opened with a token does not", async () => {
    const streams = new OpenStreams(passes, { maxPerPass: 0, sweepMs: 20 });
    try {
      const withStreams = new Authenticator(tokens, passes, streams, ca);
      const pass = await passes.create(passObject("cert-stream", { user: "jo" }));
      const issued = await issueFor(pass, p256.csrPem, new Date(Date.now() + 1500));
      const viaCert = await withStreams.authenticateRequest(new Headers(), derOf(issued.certPem));
      expect(viaCert.certificate?.notAfter).toBe(issued.notAfter.getTime());
      const certLease = viaCert.identity.openStream!(viaCert.certificate!.notAfter);
      const token = await tokens.mint(pass.metadata.name, pass.metadata.uid);
      const viaToken = await withStreams.authenticateRequest(new Headers({ authorization: `Bearer ${token}` }));
      const tokenLease = viaToken.identity.openStream!();
      expect(certLease.signal.aborted).toBe(false);
      for (let i = 0; i < 200 && !certLease.signal.aborted; i++) await Bun.sleep(25);
      expect(certLease.signal.aborted).toBe(true);
      expect((certLease.signal.reason as ApiError).message).toBe('the client certificate of pass "cert-stream" expired');
      expect(tokenLease.signal.aborted).toBe(false);
      tokenLease.release();
    } finally {
      streams.stop();
    }
  });
});

describe("who may request a certificate", () => {
  const identity = (pass: string, isAdmin = false) => ({ pass, isAdmin, user: pass }) as Identity;

  test("an admin pass for any pass, any other pass only for itself, refused as kube-apiserver words it", () => {
    expect(() => authorizeCertificate(identity("root", true), "alice")).not.toThrow();
    expect(() => authorizeCertificate(identity("alice"), "alice")).not.toThrow();
    let error: ApiError | undefined;
    try {
      authorizeCertificate(identity("alice"), "bob");
    } catch (e) {
      error = e as ApiError;
    }
    expect(error?.code).toBe(403);
    expect(error?.message).toBe('passes.cluster.kpass.dev "bob" is forbidden: User "alice" cannot create resource "passes/certificate" in API group "cluster.kpass.dev" at the cluster scope: pass "alice" may only request certificates for itself');
  });
});
