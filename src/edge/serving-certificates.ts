import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { createCertificateAuthority, issueServingCertificate, type CertificateAndKey } from "./pki.ts";

export interface ServingCertificates {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface ServingCertificateOptions {
  dataDir: string;
  /** Extra subject alternative names (DNS names or IP addresses). */
  sans: string[];
  /** Supplied PEM files (all three, or none): then nothing is generated. */
  certFile?: string;
  keyFile?: string;
  caFile?: string;
}

const isIp = (value: string) => /^[\d.]+$/.test(value) || value.includes(":");

async function readPair(certPath: string, keyPath: string): Promise<CertificateAndKey | undefined> {
  if (!existsSync(certPath) || !existsSync(keyPath)) return undefined;
  return { certPem: await readFile(certPath, "utf8"), keyPem: await readFile(keyPath, "utf8") };
}

async function writePair(pair: CertificateAndKey, certPath: string, keyPath: string): Promise<void> {
  await writeFile(certPath, pair.certPem, { mode: 0o644 });
  await writeFile(keyPath, pair.keyPem, { mode: 0o600 });
}

/** Whether the existing serving certificate already covers every wanted name. */
function coversNames(certPem: string, dnsNames: string[], ips: string[]): boolean {
  const san = new X509Certificate(certPem).subjectAltName ?? "";
  return dnsNames.every((d) => san.includes(`DNS:${d}`)) && ips.every((ip) => san.includes(`IP Address:${ip}`));
}

/**
 * The CA and serving certificate of the kpass listener: supplied by flags, or created on first
 * start in the data directory (SANs localhost, 127.0.0.1, the host name, plus --san) and reused.
 */
export async function loadServingCertificates(options: ServingCertificateOptions): Promise<ServingCertificates> {
  if (options.certFile || options.keyFile) {
    if (!options.certFile || !options.keyFile) throw new Error("--tls-cert and --tls-key must be given together");
    const certPem = await readFile(options.certFile, "utf8");
    const caPem = options.caFile ? await readFile(options.caFile, "utf8") : certPem;
    return { caPem, certPem, keyPem: await readFile(options.keyFile, "utf8") };
  }
  const caPath = join(options.dataDir, "ca.crt");
  const caKeyPath = join(options.dataDir, "ca.key");
  let ca = await readPair(caPath, caKeyPath);
  if (!ca) {
    ca = await createCertificateAuthority("kpass-ca");
    await writePair(ca, caPath, caKeyPath);
  }
  const wanted = ["localhost", "127.0.0.1", hostname(), ...options.sans];
  const dnsNames = [...new Set(wanted.filter((n) => !isIp(n)))];
  const ips = [...new Set(wanted.filter(isIp))];
  const certPath = join(options.dataDir, "serving.crt");
  const keyPath = join(options.dataDir, "serving.key");
  let serving = await readPair(certPath, keyPath);
  if (!serving || !coversNames(serving.certPem, dnsNames, ips)) {
    serving = await issueServingCertificate(ca, { commonName: "kpass", dnsNames, ipAddresses: ips });
    await writePair(serving, certPath, keyPath);
  }
  return { caPem: ca.certPem, certPem: serving.certPem, keyPem: serving.keyPem };
}
