import { SignJWT, errors, jwtVerify } from "jose";
import { TOKEN_ALGORITHM, type SigningKey } from "./signing-key.ts";

export const TOKEN_ISSUER = "kpass";

export interface TokenClaims {
  /** Pass name. */
  sub: string;
  /** Pass uid: a deleted and re-created pass of the same name does not honour old tokens. */
  jti: string;
  exp?: number;
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; reason: string };

const CACHE_LIMIT = 50_000;

/** Mints and verifies pass tokens (JWT, ES256 only); verified tokens are cached by their text. */
export class TokenService {
  private readonly verified = new Map<string, TokenClaims>();

  constructor(private readonly key: SigningKey) {}

  /**
   * The token carries no expiry of its own: the Pass it names is checked on every request, so
   * shortening or extending `expiresAt` (or deleting the pass) applies to tokens already issued.
   */
  mint(passName: string, passUid: string): Promise<string> {
    return new SignJWT({}).setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: this.key.kid, typ: "JWT" }).setIssuer(TOKEN_ISSUER).setSubject(passName).setJti(passUid).setIssuedAt().sign(this.key.privateKey);
  }

  /** The claims of a token verified before (the cache), without a promise; undefined when not cached. */
  cached(token: string): TokenClaims | undefined {
    return this.verified.get(token);
  }

  /** Signature and shape only; whether the pass still exists and is current is the caller's check. */
  async verify(token: string): Promise<TokenCheck> {
    const cached = this.verified.get(token);
    if (cached) return { ok: true, claims: cached };
    try {
      const { payload } = await jwtVerify(token, this.key.publicKey, { algorithms: [TOKEN_ALGORITHM], issuer: TOKEN_ISSUER });
      if (typeof payload.sub !== "string" || typeof payload.jti !== "string") return { ok: false, reason: "token lacks sub or jti" };
      const claims: TokenClaims = { sub: payload.sub, jti: payload.jti, exp: payload.exp };
      if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
      this.verified.set(token, claims);
      return { ok: true, claims };
    } catch (error) {
      if (error instanceof errors.JWTExpired) return { ok: false, reason: "expired" };
      return { ok: false, reason: "invalid token" };
    }
  }
}
