/** A fresh P-256 key pair and a CSR for it, made on the user's machine (`kpass kubeconfig --cert`). */
import { exportPrivateKey, generateKeys, loadX509, SIGNING_ALGORITHM } from "../auth/pki.ts";

export async function newKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  const x509 = await loadX509();
  const keys = await generateKeys();
  // The subject is kpass's to decide; the CN only makes the CSR readable.
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [commonName] }], keys, signingAlgorithm: SIGNING_ALGORITHM });
  return { keyPem: await exportPrivateKey(keys.privateKey), csrPem: csr.toString("pem") + "\n" };
}
