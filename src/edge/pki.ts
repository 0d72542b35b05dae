/**
 * Serving certificates for the kpass listener, and client certificates for tests and for
 * clusters that authenticate kpass by certificate, on top of auth/pki.ts.
 */
import type * as X509 from "@peculiar/x509";
import { exportPrivateKey, generateKeys, loadAuthority, loadX509, randomSerial, SIGNING_ALGORITHM, validateName, validity, type CertificateAndKey, type X509Module } from "../auth/pki.ts";

export { createCertificateAuthority, type CertificateAndKey } from "../auth/pki.ts";

async function issueLeaf(
  ca: CertificateAndKey,
  subject: X509.JsonName,
  validDays: number | undefined,
  usages: ("serverAuth" | "clientAuth")[],
  extra: (x509: X509Module) => X509.Extension[],
): Promise<CertificateAndKey> {
  const x509 = await loadX509();
  const authority = await loadAuthority(x509, ca);
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: authority.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: authority.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    ...validity(validDays, 365),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(usages.map((usage) => x509.ExtendedKeyUsage[usage]), false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(authority.keyId, false),
      ...extra(x509),
    ],
  });
  return { certPem: cert.toString("pem") + "\n", keyPem: await exportPrivateKey(keys.privateKey) };
}

/**
 * A TLS serving certificate (extKeyUsage serverAuth) with DNS and IP subject alternative names;
 * `alsoClient` adds clientAuth (etcd's own gateway presents its serving certificate to itself).
 */
export async function issueServingCertificate(
  ca: CertificateAndKey,
  options: { commonName: string; dnsNames: string[]; ipAddresses: string[]; validDays?: number; alsoClient?: boolean },
): Promise<CertificateAndKey> {
  validateName("commonName", options.commonName);
  if (options.dnsNames.length + options.ipAddresses.length === 0) {
    throw new Error("a serving certificate needs at least one DNS name or IP address");
  }
  const names: X509.JsonGeneralName[] = [
    ...options.dnsNames.map((value) => ({ type: "dns" as const, value })),
    ...options.ipAddresses.map((value) => ({ type: "ip" as const, value })),
  ];
  return issueLeaf(ca, [{ CN: [options.commonName] }], options.validDays, options.alsoClient ? ["serverAuth", "clientAuth"] : ["serverAuth"], (x509) => [
    new x509.SubjectAlternativeNameExtension(names, false),
  ]);
}

/**
 * A TLS client certificate (extKeyUsage clientAuth). Kubernetes reads the user from CN and the
 * groups from O, so each organization becomes its own O attribute.
 */
export async function issueClientCertificate(
  ca: CertificateAndKey,
  options: { commonName: string; organizations?: string[]; validDays?: number },
): Promise<CertificateAndKey> {
  validateName("commonName", options.commonName);
  const subject: X509.JsonName = [
    ...(options.organizations ?? []).map((organization) => ({ O: [organization] })),
    { CN: [options.commonName] },
  ];
  return issueLeaf(ca, subject, options.validDays, ["clientAuth"], () => []);
}
