import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { X509Certificate } from "node:crypto";
import { loadOrCreatePair, type SecretStore } from "../store/secrets.ts";
import { createCertificateAuthority, issueServingCertificate, type CertificateAndKey } from "./pki.ts";

export interface ServingCertificates {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface ServingCertificateOptions {
  /** Where the serving CA lives: shared by every replica, so one kubeconfig trusts them all. */
  shared: SecretStore;
  /** Where this replica keeps its own serving certificate (its names are its own). */
  local: SecretStore;
  /** Extra subject alternative names (DNS names or IP addresses). */
  sans: string[];
  /** Supplied PEM files (all three, or none): then nothing is generated. */
  certFile?: string;
  keyFile?: string;
  caFile?: string;
}

const isIp = (value: string) => /^[\d.]+$/.test(value) || value.includes(":");

/** Whether the existing serving certificate already covers every wanted name. */
function coversNames(certPem: string, dnsNames: string[], ips: string[]): boolean {
  const san = new X509Certificate(certPem).subjectAltName ?? "";
  return dnsNames.every((d) => san.includes(`DNS:${d}`)) && ips.every((ip) => san.includes(`IP Address:${ip}`));
}

/** Whether `certPem` was signed by the CA `caPem` (not so after this replica joined another's store). */
function issuedBy(certPem: string, caPem: string): boolean {
  try {
    return new X509Certificate(certPem).verify(new X509Certificate(caPem).publicKey);
  } catch {
    return false;
  }
}

/**
 * The CA and serving certificate of the kpass listener: supplied by flags, or created on first
 * start — the CA once among the shared secrets, the serving certificate by each replica for its
 * own names (localhost, 127.0.0.1, the host name, plus --san) — and reused.
 */
export async function loadServingCertificates(options: ServingCertificateOptions): Promise<ServingCertificates> {
  if (options.certFile || options.keyFile) {
    if (!options.certFile || !options.keyFile) throw new Error("--tls-cert and --tls-key must be given together");
    const certPem = await readFile(options.certFile, "utf8");
    const caPem = options.caFile ? await readFile(options.caFile, "utf8") : certPem;
    return { caPem, certPem, keyPem: await readFile(options.keyFile, "utf8") };
  }
  const ca = await loadOrCreatePair(options.shared, { cert: "ca.crt", key: "ca.key" }, () => createCertificateAuthority("kpass-ca"));
  // The CA certificate in the data directory too, for `curl --cacert` (already there for one kpass).
  if (options.local !== options.shared && (await options.local.read("ca.crt")) !== ca.certPem) await options.local.write("ca.crt", ca.certPem);
  const wanted = ["localhost", "127.0.0.1", hostname(), ...options.sans];
  const dnsNames = [...new Set(wanted.filter((n) => !isIp(n)))];
  const ips = [...new Set(wanted.filter(isIp))];
  const [certPem, keyPem] = await Promise.all([options.local.read("serving.crt"), options.local.read("serving.key")]);
  let serving: CertificateAndKey | undefined = certPem && keyPem ? { certPem, keyPem } : undefined;
  if (!serving || !coversNames(serving.certPem, dnsNames, ips) || !issuedBy(serving.certPem, ca.certPem)) {
    serving = await issueServingCertificate(ca, { commonName: "kpass", dnsNames, ipAddresses: ips });
    await options.local.write("serving.key", serving.keyPem);
    await options.local.write("serving.crt", serving.certPem);
  }
  return { caPem: ca.certPem, certPem: serving.certPem, keyPem: serving.keyPem };
}
