import type { Cluster } from "../api/kinds/cluster.ts";
import { badRequest, forbidden } from "../api/status.ts";
import type { ImpersonationHeaders } from "../proxy/upstream-headers.ts";
import type { Identity } from "./identity.ts";
import { rulesAllow } from "./policy-rules.ts";
import { describeAttributes, isDiscoveryPath, PathError, requestAttributes, type RequestAttributes } from "./request-attributes.ts";

export interface ProxyDecision {
  attributes: RequestAttributes;
  /** Identity headers kpass itself adds toward the cluster, if any. */
  impersonate?: ImpersonationHeaders;
}

function who(identity: Identity): string {
  return `pass "${identity.pass}" (user "${identity.user}")`;
}

function parseAttributes(method: string, path: string, search: string, upgrade: boolean): RequestAttributes {
  try {
    return requestAttributes(method, path, new URLSearchParams(search), { upgrade });
  } catch (error) {
    if (error instanceof PathError) throw badRequest(`invalid request path: ${error.message}`);
    throw error;
  }
}

function impersonationAttributes(resource: "users" | "groups", name: string): RequestAttributes {
  return { isResourceRequest: true, verb: "impersonate", apiGroup: "", apiVersion: "v1", resource, subresource: "", namespace: "", name, path: "" };
}

function hasOtherImpersonation(headers: Headers): boolean {
  for (const name of headers.keys()) if (name.startsWith("impersonate-")) return true;
  return false;
}

/** A client's own `--as`/`--as-group`, honoured only where the pass has an impersonate rule for it. */
function requestedImpersonation(identity: Identity, headers: Headers, clusterName: string): ImpersonationHeaders | undefined {
  const user = headers.get("impersonate-user");
  const groups = (headers.get("impersonate-group") ?? "").split(",").map((g) => g.trim()).filter(Boolean);
  if (!user && groups.length === 0 && !hasOtherImpersonation(headers)) return undefined;
  const extras = [...headers.keys()].filter((h) => h.startsWith("impersonate-") && h !== "impersonate-user" && h !== "impersonate-group");
  if (!user) throw forbidden(`${who(identity)} sent Impersonate-Group or Impersonate-Extra without Impersonate-User`);
  if (extras.length > 0) throw forbidden(`${who(identity)} cannot impersonate extra attributes (${extras.join(", ")}) on cluster "${clusterName}"`);
  if (!rulesAllow(identity.rules, impersonationAttributes("users", user))) {
    throw forbidden(`${who(identity)} cannot impersonate user "${user}" on cluster "${clusterName}": the pass has no impersonate rule for it`);
  }
  for (const group of groups) {
    if (!rulesAllow(identity.rules, impersonationAttributes("groups", group))) {
      throw forbidden(`${who(identity)} cannot impersonate group "${group}" on cluster "${clusterName}": the pass has no impersonate rule for it`);
    }
  }
  return { user, groups };
}

/**
 * Decides whether `identity` may send this request to `cluster`, and with which identity headers.
 * Discovery of a reachable cluster is always allowed; everything else must match a pass rule.
 */
export function authorizeProxy(identity: Identity, cluster: Cluster, request: { method: string; path: string; search: string; headers: Headers; upgrade: boolean }): ProxyDecision {
  const name = cluster.metadata.name;
  if (!identity.reachesCluster(cluster)) throw forbidden(`${who(identity)} does not reach cluster "${name}"`);
  const attributes = parseAttributes(request.method, request.path, request.search, request.upgrade);
  const discovery = !attributes.isResourceRequest && isDiscoveryPath(attributes.path) && attributes.verb === "get";
  if (!discovery && !rulesAllow(identity.rules, attributes)) {
    throw forbidden(`${who(identity)} cannot ${describeAttributes(attributes)} on cluster "${name}"`);
  }
  let asked: ImpersonationHeaders | undefined;
  try {
    asked = requestedImpersonation(identity, request.headers, name);
  } catch (error) {
    // Discovery is the same for every identity: answer it as the pass itself, so that kubectl
    // reaches the real request and prints why the impersonation was refused there.
    if (!discovery) throw error;
  }
  if (asked) return { attributes, impersonate: asked };
  if (cluster.spec.impersonation === "user") return { attributes, impersonate: { user: identity.user, groups: identity.groups } };
  return { attributes };
}
