import { badRequest } from "../api/status.ts";
import { GROUP, VERSION } from "../api/kind.ts";

export const CLUSTERS_PREFIX = `/apis/${GROUP}/${VERSION}/clusters/`;

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

function isDotSegment(segment: string): boolean {
  const decoded = segment.replace(/%2e/gi, ".");
  return decoded === "." || decoded === "..";
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`invalid percent-encoding in "${segment}"`);
  }
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
  const cluster = decodeSegment(rest.slice(0, slash));
  const after = rest.slice(slash);
  if (after !== "/proxy" && !after.startsWith("/proxy/")) return undefined;
  const proxied = after.slice("/proxy".length) || "/";
  const segments = proxied.split("/");
  if (cluster.includes("/")) throw badRequest(`invalid cluster name "${cluster}"`);
  if (segments.some(isDotSegment) || /%00|\0/i.test(proxied)) {
    throw badRequest(`invalid proxy path "${proxied}": "." and ".." segments are not allowed`);
  }
  return { cluster, path: proxied, search };
}
