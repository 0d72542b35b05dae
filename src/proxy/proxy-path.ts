/**
 * Request targets are never resolved: a dot segment in any spelling is refused on every request,
 * as kube-apiserver refuses it (404), so no path can climb out of the cluster or object it names
 * and the audit log records exactly what the client sent.
 */
import { badRequest } from "../core/status.ts";
import { CLUSTERS_PREFIX, decodePathSegment } from "../core/api-group.ts";

export interface ProxyTarget {
  cluster: string;
  /** Path on the cluster, still percent-encoded as the client sent it; starts with "/". */
  path: string;
  /** Query string including the leading "?", or "". */
  search: string;
}

/** Splits a raw request target ("/path?query") without normalising it. */
export function splitTarget(target: string): { path: string; search: string } {
  const q = target.indexOf("?");
  return q < 0 ? { path: target, search: "" } : { path: target.slice(0, q), search: target.slice(q) };
}


function percentDecode(path: string): string {
  // Decode byte-wise without throwing on malformed escapes: an invalid "%zz" stays as it is.
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** A "." or ".." segment in an undecoded path, "/" or "\" separating. */
const LITERAL_DOT_SEGMENT = /(?:^|[/\\])\.\.?(?:[/\\]|$)/;

/** Whether the path of `target` has a "." or ".." segment, literal or percent-encoded, with "/" or "\" as separator. */
export function hasDotSegment(target: string): boolean {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  // Every request pays this up to three times, and every proxy target has a "." (the API
  // group): without an escape the path is its own decoding, so one scan answers.
  if (!path.includes("%")) return LITERAL_DOT_SEGMENT.test(path);
  return percentDecode(path)
    .split(/[/\\]/)
    .some((segment) => segment === "." || segment === "..");
}

/**
 * Recognises `/apis/cluster.kpass.dev/v1beta1/clusters/{name}/proxy[/{path}]` in a raw request
 * target. Dot segments are refused rather than resolved: a proxied path must not be able to
 * climb out of the cluster it names, however it is encoded.
 */
export function parseProxyTarget(rawTarget: string): ProxyTarget | undefined {
  const { path, search } = splitTarget(rawTarget);
  if (!path.startsWith(CLUSTERS_PREFIX)) return undefined;
  const rest = path.slice(CLUSTERS_PREFIX.length);
  const slash = rest.indexOf("/");
  if (slash < 0) return undefined;
  const cluster = decodePathSegment(rest.slice(0, slash));
  const after = rest.slice(slash);
  if (after !== "/proxy" && !after.startsWith("/proxy/")) return undefined;
  const proxied = after.slice("/proxy".length) || "/";
  if (cluster.includes("/")) throw badRequest(`invalid cluster name "${cluster}"`);
  // The edge answers dot segments 404 before anything is parsed; refused here too, whoever calls.
  if (hasDotSegment(proxied) || /%00|\0/i.test(proxied)) {
    throw badRequest(`invalid proxy path "${proxied}": "." and ".." segments and NUL are not allowed`);
  }
  return { cluster, path: proxied, search };
}

/** Whether `rawTarget` is addressed to a cluster's proxy (even if it is malformed there). */
export function isProxyTarget(rawTarget: string): boolean {
  try {
    return parseProxyTarget(rawTarget) !== undefined;
  } catch {
    return true;
  }
}

/** The cluster name a raw target names, best effort, for refusals that happen before it parses. */
export function clusterNameOf(rawTarget: string): string {
  const rest = rawTarget.startsWith(CLUSTERS_PREFIX) ? rawTarget.slice(CLUSTERS_PREFIX.length) : "";
  const end = rest.search(/[/?]/);
  return end < 0 ? "" : rest.slice(0, end);
}
