/** kpass's API group, its resources, and the path a cluster-bound request takes. */
import type { GroupResource } from "./status.ts";

export const GROUP = "cluster.kpass.dev";
export const VERSION = "v1beta1";
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Every path of kpass's own objects starts here. */
export const GROUP_PREFIX = `/apis/${GROUP}/${VERSION}`;
/** `${CLUSTERS_PREFIX}{name}/proxy/{path}` is forwarded to cluster {name} as `/{path}`. */
export const CLUSTERS_PREFIX = `${GROUP_PREFIX}/clusters/`;

export const CLUSTERS: GroupResource = { group: GROUP, resource: "clusters" };
export const PASSES: GroupResource = { group: GROUP, resource: "passes" };
