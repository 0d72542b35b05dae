/**
 * A PassCertificateRequest's CSR and lifetime: only the CSR's public key is used (kpass decides the
 * subject and extensions), and only after its signature verifies and its key is one of P-256,
 * P-384, Ed25519 or RSA 2048–8192 bits. Every refusal is a 400 Status.
 */
import type * as X509 from "@peculiar/x509";
import { badRequest } from "../core/status.ts";
import { loadX509 } from "./pki.ts";

/** Longest CSR accepted, PEM (a 8192-bit RSA CSR is about 2.5 KiB). */
const MAX_CSR_BYTES = 16 * 1024;
const PEM_BLOCK = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (NEW )?CERTIFICATE REQUEST-----/;
const ACCEPTED = "ECDSA P-256 or P-384, Ed25519, or RSA of 2048 to 8192 bits";

const invalid = (why: string) => badRequest(`invalid certificate request: ${why}`);

/** The accepted-key description of `key`, or why it is refused. */
function checkKey(key: CryptoKey): string | undefined {
  const algorithm = key.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  switch (algorithm.name) {
    case "ECDSA":
      return algorithm.namedCurve === "P-256" || algorithm.namedCurve === "P-384" ? undefined : `the key is ECDSA ${algorithm.namedCurve ?? "on an unknown curve"}; accepted keys are ${ACCEPTED}`;
    case "Ed25519":
      return undefined;
    case "RSASSA-PKCS1-v1_5": {
      const bits = algorithm.modulusLength ?? 0;
      return bits >= 2048 && bits <= 8192 ? undefined : `the key is RSA of ${bits} bits; accepted keys are ${ACCEPTED}`;
    }
  }
  return `the key is ${algorithm.name}; accepted keys are ${ACCEPTED}`;
}

/** The CSR's signature hash must be SHA-256 or stronger (Ed25519 has none to name). */
function checkSignatureAlgorithm(csr: X509.Pkcs10CertificateRequest): string | undefined {
  const algorithm = csr.signatureAlgorithm as { name?: string; hash?: { name?: string } | string };
  if (algorithm.name === "Ed25519") return undefined;
  const hash = typeof algorithm.hash === "string" ? algorithm.hash : algorithm.hash?.name;
  return hash && ["SHA-256", "SHA-384", "SHA-512"].includes(hash) ? undefined : `the request is signed with ${algorithm.name ?? "an unknown algorithm"}${hash ? `/${hash}` : ""}; it must be signed with SHA-256 or stronger`;
}

/**
 * The public key of `request` (base64 of a PEM "CERTIFICATE REQUEST", as Kubernetes'
 * CertificateSigningRequest spec.request), once the CSR's signature verified and its key passed.
 */
export async function readCertificateRequest(request: unknown): Promise<X509.PublicKey> {
  if (typeof request !== "string" || request === "") throw invalid("spec.request must be the base64 encoding of a PEM CERTIFICATE REQUEST");
  if (request.length > (MAX_CSR_BYTES * 4) / 3 + 4) throw invalid(`spec.request is larger than ${MAX_CSR_BYTES} bytes`);
  if (!/^[A-Za-z0-9+/=\s]+$/.test(request)) throw invalid("spec.request is not base64");
  const pem = Buffer.from(request, "base64").toString("latin1");
  const block = PEM_BLOCK.exec(pem);
  if (!block) throw invalid('spec.request does not contain a PEM block of type "CERTIFICATE REQUEST"');
  const x509 = await loadX509();
  let csr: X509.Pkcs10CertificateRequest;
  let key: CryptoKey;
  try {
    csr = new x509.Pkcs10CertificateRequest(new Uint8Array(Buffer.from(block[2]!.replace(/\s+/g, ""), "base64")));
    key = await csr.publicKey.export();
  } catch {
    throw invalid(`the CSR could not be parsed, or its key is not one of ${ACCEPTED}`);
  }
  const weak = checkKey(key);
  if (weak) throw invalid(weak);
  const hash = checkSignatureAlgorithm(csr);
  if (hash) throw invalid(hash);
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) throw invalid("the CSR's signature does not verify with its public key");
  return csr.publicKey;
}

/** Kubernetes' shortest certificate lifetime for a CSR (expirationSeconds). */
export const MIN_EXPIRATION_SECONDS = 600;

/**
 * notAfter of a certificate issued at `now`: the earliest of the requested lifetime, the server's
 * --max-cert-ttl and the pass's expiry. `requestedSeconds` undefined asks for the maximum.
 */
export function certificateNotAfter(now: number, requestedSeconds: number | undefined, maxTtlMs: number, passExpiresAt: string | undefined): Date {
  let end = now + maxTtlMs;
  if (requestedSeconds !== undefined) end = Math.min(end, now + requestedSeconds * 1000);
  if (passExpiresAt !== undefined) {
    const expiry = Date.parse(passExpiresAt);
    if (!Number.isNaN(expiry)) end = Math.min(end, expiry);
  }
  // X.509 times have whole seconds; never round past a bound.
  return new Date(Math.floor(end / 1000) * 1000);
}

/** spec.expirationSeconds: absent, or an integer of at least 600 (as Kubernetes requires of CSRs). */
export function readExpirationSeconds(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) throw badRequest(`spec.expirationSeconds: Invalid value: ${JSON.stringify(value)}: must be an integer number of seconds`);
  if (value < MIN_EXPIRATION_SECONDS) throw badRequest(`spec.expirationSeconds: Invalid value: ${value}: may not specify a duration less than ${MIN_EXPIRATION_SECONDS} seconds (10 minutes)`);
  return value;
}
