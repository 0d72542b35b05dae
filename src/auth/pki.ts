/**
 * The pure ground of kpass's PKI: loading @peculiar/x509, PEM, serials, and self-signed CAs
 * (ECDSA P-256 / SHA-256 via WebCrypto, in shapes Go's crypto/x509 accepts). Serving
 * certificates (edge/pki.ts) and pass client certificates (auth/client-certificates.ts) build on it.
 */
import type * as X509 from "@peculiar/x509";

export interface CertificateAndKey {
  /** PEM "-----BEGIN CERTIFICATE-----" */
  certPem: string;
  /** PKCS#8 PEM "-----BEGIN PRIVATE KEY-----" */
  keyPem: string;
}

export const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
export const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Backdate notBefore so small clock skew between machines does not reject a fresh cert. */
export const BACKDATE_MS = 5 * 60 * 1000;

/**
 * @peculiar/x509 resolves its algorithm providers through tsyringe, which refuses to load unless
 * the Reflect metadata API exists. Install the few functions it uses (only if absent), then load
 * the library lazily so the shim is in place before its module body runs.
 */
function installReflectMetadata(): void {
  const reflect = Reflect as unknown as Record<string, unknown>;
  if (typeof reflect.getMetadata === "function") return;
  const store = new WeakMap<object, Map<PropertyKey | undefined, Map<unknown, unknown>>>();
  const table = (target: object, property: PropertyKey | undefined, create: boolean) => {
    let byProperty = store.get(target);
    if (!byProperty) {
      if (!create) return undefined;
      byProperty = new Map();
      store.set(target, byProperty);
    }
    let entries = byProperty.get(property);
    if (!entries && create) {
      entries = new Map();
      byProperty.set(property, entries);
    }
    return entries;
  };
  const getOwn = (key: unknown, target: object, property?: PropertyKey) => table(target, property, false)?.get(key);
  const hasOwn = (key: unknown, target: object, property?: PropertyKey) => table(target, property, false)?.has(key) ?? false;
  const has = (key: unknown, target: object, property?: PropertyKey): boolean => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t)) if (hasOwn(key, t, property)) return true;
    return false;
  };
  const get = (key: unknown, target: object, property?: PropertyKey): unknown => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t)) {
      if (hasOwn(key, t, property)) return getOwn(key, t, property);
    }
    return undefined;
  };
  const define = (key: unknown, value: unknown, target: object, property?: PropertyKey) => {
    table(target, property, true)!.set(key, value);
  };
  Object.assign(reflect, {
    defineMetadata: define,
    getOwnMetadata: getOwn,
    hasOwnMetadata: hasOwn,
    getMetadata: get,
    hasMetadata: has,
    metadata: (key: unknown, value: unknown) => (target: object, property?: PropertyKey) => define(key, value, target, property),
  });
}

export type X509Module = typeof X509;
let x509Loading: Promise<X509Module> | undefined;
export function loadX509(): Promise<X509Module> {
  x509Loading ??= (async () => {
    installReflectMetadata();
    const module: X509Module = await import("@peculiar/x509");
    module.cryptoProvider.set(crypto);
    return module;
  })();
  return x509Loading;
}

/** 16 random bytes, top bit clear and first byte non-zero: positive and minimally DER-encoded. */
export function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString("hex");
}

export function validity(validDays: number | undefined, fallbackDays: number): { notBefore: Date; notAfter: Date } {
  const days = validDays ?? fallbackDays;
  if (!(days > 0)) throw new Error(`validDays must be positive, got ${days}`);
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

export function toPem(der: ArrayBuffer, label: string): string {
  const base64 = Buffer.from(der).toString("base64");
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export function fromPem(pem: string, label: string): Uint8Array<ArrayBuffer> {
  const match = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(pem);
  if (!match) throw new Error(`no ${label} PEM block found`);
  const der = Buffer.from(match[1]!.replace(/\s+/g, ""), "base64");
  const bytes = new Uint8Array(new ArrayBuffer(der.length));
  bytes.set(der);
  return bytes;
}

export async function generateKeys(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function exportPrivateKey(key: CryptoKey): Promise<string> {
  return toPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

export function validateName(kind: string, value: string): void {
  if (!value) throw new Error(`${kind} must not be empty`);
}

/** A self-signed CA certificate (CA:true critical, keyCertSign|cRLSign, subjectKeyIdentifier). */
export async function createCertificateAuthority(commonName: string, validDays?: number): Promise<CertificateAndKey> {
  validateName("commonName", commonName);
  const x509 = await loadX509();
  const keys = await generateKeys();
  const name: X509.JsonName = [{ CN: [commonName] }];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name,
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    ...validity(validDays, 3650),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem") + "\n", keyPem: await exportPrivateKey(keys.privateKey) };
}

export interface LoadedAuthority {
  cert: X509.X509Certificate;
  signingKey: CryptoKey;
  keyId: string;
}

export async function loadAuthority(x509: X509Module, ca: CertificateAndKey): Promise<LoadedAuthority> {
  const cert = new x509.X509Certificate(ca.certPem);
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (!basic?.ca) throw new Error("issuer certificate is not a CA (basicConstraints CA:false or missing)");
  const signingKey = await crypto.subtle.importKey("pkcs8", fromPem(ca.keyPem, "PRIVATE KEY"), KEY_ALGORITHM, false, ["sign"]);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski ? ski.keyId : (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey)).keyId;
  return { cert, signingKey, keyId };
}

