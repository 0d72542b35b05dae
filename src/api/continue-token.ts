/**
 * The `continue` token of a paged LIST, spelled as kube-apiserver spells it (base64 of
 * `{"v":"meta.k8s.io/v1","rv":N,"start":"<next name>"}`): the pages after the first are served at
 * the first page's revision, by whichever replica gets them.
 */
import { badRequest } from "../core/status.ts";

export interface ContinueAt {
  revision: number;
  /** The first name the next page may hold. */
  start: string;
}

export function encodeContinue(revision: number, lastName: string): string {
  // "\u0000" sorts right after lastName: the next page starts at the name that follows it.
  return Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv: revision, start: `${lastName}\u0000` })).toString("base64url");
}

export function decodeContinue(token: string): ContinueAt {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw badRequest("continue key is not valid: not a continue token kpass issued");
  }
  const { v, rv, start } = (decoded ?? {}) as { v?: unknown; rv?: unknown; start?: unknown };
  if (v !== "meta.k8s.io/v1") throw badRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
  if (typeof rv !== "number" || !Number.isSafeInteger(rv) || rv <= 0) throw badRequest("continue key is not valid: incorrect encoded start resourceVersion");
  if (typeof start !== "string" || start.length === 0 || start.length > 300) throw badRequest("continue key is not valid: invalid start");
  return { revision: rv, start };
}
