import { notFound } from "../core/status.ts";
import { CLUSTERS } from "../core/api-group.ts";
import { authorizeProxy, type ProxyDecision, type ProxyRequest } from "../auth/authorize.ts";
import type { Identity } from "../auth/identity.ts";
import type { ObjectStore } from "../store/object-store.ts";
import type { ClusterTransport, ClusterTransports } from "./cluster-transport.ts";
import type { ProxyTarget } from "./proxy-path.ts";
import { upstreamHeaders } from "./upstream-headers.ts";
import type { Cluster } from "../core/cluster.ts";

export interface ProxyDeps {
  clusters: ObjectStore<Cluster>;
  transports: ClusterTransports;
}

/** A request that may leave kpass: where it goes, as whom, and with which headers. */
export interface ProxyPlan {
  cluster: Cluster;
  transport: ClusterTransport;
  target: ProxyTarget;
  headers: Headers;
  decision: ProxyDecision;
}

/**
 * The single decision point for REST and upgrade requests alike: resolve the cluster, authorize
 * the caller, and build the outgoing headers (hygiene included).
 */
export function planProxy(deps: ProxyDeps, identity: Identity, target: ProxyTarget, request: Pick<ProxyRequest, "method" | "headers" | "rawHeaders" | "upgrade" | "hostAllowed">): ProxyPlan {
  const cluster = deps.clusters.get(target.cluster);
  if (!cluster) throw notFound(CLUSTERS, target.cluster);
  const decision = authorizeProxy(identity, cluster, { method: request.method, path: target.path, search: target.search, headers: request.headers, rawHeaders: request.rawHeaders, upgrade: request.upgrade, hostAllowed: request.hostAllowed });
  const transport = deps.transports.for(cluster);
  const headers = upstreamHeaders(request.headers, transport, decision.impersonate, { keepUpgrade: request.upgrade, rawHeaders: request.rawHeaders });
  if (!request.upgrade && !headers.has("accept-encoding")) headers.set("accept-encoding", "identity");
  return { cluster, transport, target, headers, decision };
}
