/**
 * Passes as X.509 client certificates: kpass's own client-signing CA (not the serving CA), the
 * certificates it issues for a Pass, and the check of a certificate a TLS client presents.
 *
 * A certificate names exactly one Pass in one SAN URI, `urn:kpass:pass:<name>:<uid>`: the name
 * finds the Pass, the uid binds the certificate to that Pass as it was created (a Pass deleted and
 * re-created under the same name has another uid). CN is the pass's user and each O one of its
 * groups, as Kubernetes reads them, but kpass itself decides by the SAN URI alone.
 *
 * The client CA is the only trust anchor: the chain is exactly [leaf] signed by it. Bun's
 * `authorized` flag is not consulted; the signature, issuer, validity window, basic constraints
 * and extended key usage (clientAuth) are checked here.
 */
import type * as X509 from "@peculiar/x509";
import { loadOrCreatePair, type SecretStore } from "../store/secrets.ts";
import type { Pass } from "../core/pass.ts";
import type { ClientCertificate } from "../core/request-context.ts";
import { BACKDATE_MS, createCertificateAuthority, fromPem, KEY_ALGORITHM, loadX509, randomSerial, SIGNING_ALGORITHM, type CertificateAndKey, type X509Module } from "./pki.ts";

export const PASS_URI_PREFIX = "urn:kpass:pass:";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const CACHE_LIMIT = 10_000;

/** The SAN URI naming pass `name` with uid `uid`. */
export function passUri(name: string, uid: string): string {
  return `${PASS_URI_PREFIX}${name}:${uid}`;
}

/** The pass a SAN URI names, or undefined when it is not a kpass pass URI. */
export function parsePassUri(uri: string): { name: string; uid: string } | undefined {
  if (!uri.startsWith(PASS_URI_PREFIX)) return undefined;
  const rest = uri.slice(PASS_URI_PREFIX.length);
  const colon = rest.lastIndexOf(":");
  if (colon <= 0 || colon === rest.length - 1) return undefined;
  return { name: rest.slice(0, colon), uid: rest.slice(colon + 1) };
}

/** What a presented certificate says, once its signature and shape are verified (the Pass is checked per request). */
export type CertificateCheck =
  | { ok: true; pass: string; passUid: string; serial: string; notBefore: number; notAfter: number }
  | { ok: false; reason: string };

export interface IssuedCertificate {
  certPem: string;
  /** Upper-case hex, as `openssl x509 -noout -serial` prints it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** The client-signing CA's names among kpass's secrets (files of the data directory, or etcd keys). */
export const CLIENT_CA_FILES = { cert: "client-ca.crt", key: "client-ca.key" } as const;

/** Whole bytes of hex, upper case: the spelling of `openssl x509 -noout -serial` and of Bun's peer certificate. */
function upperSerial(hex: string): string {
  const upper = hex.toUpperCase();
  return upper.length % 2 === 1 ? `0${upper}` : upper;
}

export class ClientCertificateAuthority {
  /** Checked certificates by DER (base64), for new connections presenting a known certificate. */
  private readonly checked = new Map<string, CertificateCheck>();
  /** The check of each connection's certificate object: verified once per connection. */
  private readonly perConnection = new WeakMap<ClientCertificate, Promise<CertificateCheck>>();

  private constructor(
    /** PEM of the CA certificate: the only trust anchor for client certificates. */
    readonly certPem: string,
    private readonly x509: X509Module,
    private readonly caCert: X509.X509Certificate,
    private readonly caPublicKey: CryptoKey,
    private readonly signingKey: CryptoKey,
    private readonly keyId: string,
  ) {}

  /** Loads the CA (`client-ca.{crt,key}`), creating it on first start. */
  static async loadOrCreate(secrets: SecretStore): Promise<ClientCertificateAuthority> {
    return ClientCertificateAuthority.fromPair(await loadOrCreatePair(secrets, CLIENT_CA_FILES, () => createCertificateAuthority("kpass-client-ca")));
  }

  static async fromPair(pair: CertificateAndKey): Promise<ClientCertificateAuthority> {
    const x509 = await loadX509();
    const caCert = new x509.X509Certificate(pair.certPem);
    if (!caCert.getExtension(x509.BasicConstraintsExtension)?.ca) throw new Error("the client CA certificate is not a CA (basicConstraints CA:false or missing)");
    const signingKey = await crypto.subtle.importKey("pkcs8", fromPem(pair.keyPem, "PRIVATE KEY"), KEY_ALGORITHM, false, ["sign"]);
    const caPublicKey = await caCert.publicKey.export(KEY_ALGORITHM, ["verify"]);
    const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
    const keyId = ski ? ski.keyId : (await x509.SubjectKeyIdentifierExtension.create(caCert.publicKey)).keyId;
    return new ClientCertificateAuthority(pair.certPem, x509, caCert, caPublicKey, signingKey, keyId);
  }

  /**
   * A certificate for `pass` around `publicKey` (from a checked CSR), valid until `notAfter`:
   * subject CN = user, O = groups; SAN URI naming the pass; clientAuth only.
   */
  async issue(pass: Pass, publicKey: X509.PublicKey, notAfter: Date, now = Date.now()): Promise<IssuedCertificate> {
    const x509 = this.x509;
    const subject: X509.JsonName = [...(pass.spec.groups ?? []).map((group) => ({ O: [group] })), { CN: [pass.spec.user] }];
    const serial = randomSerial();
    const notBefore = new Date(Math.max(now - BACKDATE_MS, 0));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject,
      issuer: this.caCert.subjectName,
      publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      notBefore,
      notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        new x509.AuthorityKeyIdentifierExtension(this.keyId, false),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: passUri(pass.metadata.name, pass.metadata.uid) }], false),
      ],
    });
    return { certPem: cert.toString("pem") + "\n", serial: upperSerial(serial), notBefore: cert.notBefore, notAfter: cert.notAfter };
  }

  /**
   * Verifies a presented certificate against the client CA (signature, issuer, shape) and reads
   * the pass it names. Verified once per connection (and cached by DER); the validity window and
   * the Pass itself are the caller's per-request checks.
   */
  check(certificate: ClientCertificate): Promise<CertificateCheck> {
    let pending = this.perConnection.get(certificate);
    if (!pending) {
      pending = this.checkDer(certificate.der);
      this.perConnection.set(certificate, pending);
    }
    return pending;
  }

  private async checkDer(der: Uint8Array): Promise<CertificateCheck> {
    const key = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
    const cached = this.checked.get(key);
    if (cached) return cached;
    const result = await this.verify(der);
    if (this.checked.size >= CACHE_LIMIT) this.checked.clear();
    this.checked.set(key, result);
    return result;
  }

  private async verify(der: Uint8Array): Promise<CertificateCheck> {
    const x509 = this.x509;
    const notOurs: CertificateCheck = { ok: false, reason: "the client certificate is not signed by kpass's client certificate authority" };
    let cert: X509.X509Certificate;
    try {
      cert = new x509.X509Certificate(new Uint8Array(der));
    } catch {
      return { ok: false, reason: "the client certificate could not be parsed" };
    }
    try {
      if (cert.issuer !== this.caCert.subject) return notOurs;
      const algorithm = cert.signatureAlgorithm as { name?: string; hash?: { name?: string } };
      if (algorithm.name !== SIGNING_ALGORITHM.name || algorithm.hash?.name !== SIGNING_ALGORITHM.hash) return notOurs;
      if (!(await cert.verify({ publicKey: this.caPublicKey, signatureOnly: true }))) return notOurs;
      if (cert.getExtension(x509.BasicConstraintsExtension)?.ca) return { ok: false, reason: "the client certificate is a CA certificate" };
      const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
      if (!eku || !eku.usages.map(String).includes(CLIENT_AUTH)) return { ok: false, reason: "the client certificate is not for client authentication (extended key usage clientAuth)" };
      const uris = (cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []).filter((n) => n.type === "url").map((n) => parsePassUri(n.value));
      const named = uris.length === 1 ? uris[0] : undefined;
      if (!named) return { ok: false, reason: "the client certificate does not name exactly one kpass pass" };
      return { ok: true, pass: named.name, passUid: named.uid, serial: upperSerial(cert.serialNumber), notBefore: cert.notBefore.getTime(), notAfter: cert.notAfter.getTime() };
    } catch {
      return notOurs;
    }
  }
}
