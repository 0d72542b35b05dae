/** kpass's API group, its resources, and the path a cluster-bound request takes. */
import { badRequest, type GroupResource } from "./status.ts";

export const GROUP = "cluster.kpass.dev";
export const VERSION = "v1beta1";
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Every path of kpass's own objects starts here. */
export const GROUP_PREFIX = `/apis/${GROUP}/${VERSION}`;
/** `${CLUSTERS_PREFIX}{name}/proxy/{path}` is forwarded to cluster {name} as `/{path}`. */
export const CLUSTERS_PREFIX = `${GROUP_PREFIX}/clusters/`;

export const CLUSTERS: GroupResource = { group: GROUP, resource: "clusters" };
export const PASSES: GroupResource = { group: GROUP, resource: "passes" };

/** One path segment percent-decoded; a malformed escape is the client's error (400), never a 500. */
export function decodePathSegment(segment: string): string {
  // Only an escape can make decoding differ or throw; names are almost never escaped.
  if (!segment.includes("%")) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`invalid percent-encoding in "${segment.slice(0, 256)}"`);
  }
}

/** The (still encoded) pass name of `${GROUP_PREFIX}/passes/{name}/{subresource}`, or undefined for any other path. */
export function passSubresourceName(path: string, subresource: string): string | undefined {
  const prefix = `${GROUP_PREFIX}/passes/`;
  const suffix = `/${subresource}`;
  if (!path.startsWith(prefix) || !path.endsWith(suffix)) return undefined;
  const name = path.slice(prefix.length, path.length - suffix.length);
  return name === "" || name.includes("/") ? undefined : name;
}
