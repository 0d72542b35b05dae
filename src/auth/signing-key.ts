import type { SecretStore } from "../store/secrets.ts";
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";

export const TOKEN_ALGORITHM = "ES256";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export const SIGNING_KEY_NAME = "token-signing.jwk";

/**
 * The pass-token signing key, created on first start. Every replica signs with the same key, so a
 * token one issued is good on all: the first to store it wins, the others take its key.
 */
export async function loadOrCreateSigningKey(secrets: SecretStore, name: string = SIGNING_KEY_NAME): Promise<SigningKey> {
  let text = await secrets.read(name);
  if (text === undefined) {
    const { privateKey } = await generateKeyPair(TOKEN_ALGORITHM, { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: crypto.randomUUID(), alg: TOKEN_ALGORITHM };
    text = await secrets.createIfAbsent(name, JSON.stringify(jwk));
  }
  const jwk = JSON.parse(text) as JWK & { kid: string };
  const { d: _private, ...publicJwk } = jwk;
  return {
    kid: jwk.kid,
    privateKey: (await importJWK(jwk, TOKEN_ALGORITHM)) as CryptoKey,
    publicKey: (await importJWK(publicJwk, TOKEN_ALGORITHM)) as CryptoKey,
  };
}
