import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";

export const TOKEN_ALGORITHM = "ES256";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** Loads the pass-token signing key from the data directory, creating it (0600) on first start. */
export async function loadOrCreateSigningKey(path: string): Promise<SigningKey> {
  if (existsSync(path)) {
    const jwk = JSON.parse(await readFile(path, "utf8")) as JWK & { kid: string };
    const { d: _private, ...publicJwk } = jwk;
    return {
      kid: jwk.kid,
      privateKey: (await importJWK(jwk, TOKEN_ALGORITHM)) as CryptoKey,
      publicKey: (await importJWK(publicJwk, TOKEN_ALGORITHM)) as CryptoKey,
    };
  }
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALGORITHM, { extractable: true });
  const kid = crypto.randomUUID();
  const jwk = { ...(await exportJWK(privateKey)), kid, alg: TOKEN_ALGORITHM };
  await writeFile(path, JSON.stringify(jwk), { mode: 0o600, flag: "wx" });
  return { kid, privateKey, publicKey };
}
