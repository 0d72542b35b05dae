/**
 * Who may do what on kpass's own API — the one place that decides it. Admin passes manage
 * everything and see credentials; any other pass reads the Clusters it reaches and its own Pass
 * and kubeconfig, requests client certificates for its own Pass (and reads /metrics when its rules name it), and nothing else. What a pass may not read does not exist for it (404).
 */
import { GROUP } from "../core/api-group.ts";
import type { StoredObject } from "../core/object.ts";
import type { ApiError } from "../core/status.ts";
import { forbiddenRequest } from "./forbidden.ts";
import { IMPLICIT_RULES } from "./self-review.ts";
import type { PolicyRule } from "../core/pass.ts";
import type { Identity } from "./identity.ts";
import { PathError, requestAttributes, type RequestAttributes } from "./request-attributes.ts";
import { badRequest } from "../core/status.ts";

export type KpassResource = "clusters" | "passes";

function attributes(verb: string, resource: string, name: string, subresource = ""): RequestAttributes {
  return { isResourceRequest: true, verb, apiGroup: GROUP, apiVersion: "v1beta1", resource, subresource, namespace: "", name, path: "" };
}

function refuse(identity: Identity, a: RequestAttributes, reason: string): ApiError {
  return forbiddenRequest(identity.user, a, `pass ${JSON.stringify(identity.pass)} ${reason}`);
}

/** Throws 403 unless `identity` may write (create, update, patch, delete) `resource`. */
export function authorizeWrite(identity: Identity, verb: string, resource: KpassResource, name: string, subresource = ""): void {
  if (identity.delegated) return; // the host allowed this very request (authorizeDelegatedApi)
  if (!identity.isAdmin) throw refuse(identity, attributes(verb, resource, name, subresource), "is not an admin pass: only an admin pass may change kpass's objects");
}

/**
 * A host user's request to kpass's own API (aggregated mode), asked of the host with the ordinary
 * attributes (SubjectAccessReview); a 403 worded like kube-apiserver's when it says no. Once it has
 * said yes, the functions below let a delegated identity through: this is the decision. Cluster
 * credentials stay hidden from host users whatever the host says.
 */
export async function authorizeDelegatedApi(identity: Identity, method: string, path: string, search: string): Promise<void> {
  if (!identity.delegated) return;
  let a: RequestAttributes;
  try {
    a = requestAttributes(method, path, new URLSearchParams(search));
  } catch (error) {
    if (error instanceof PathError) throw badRequest(`invalid request path: ${error.message}`);
    throw error;
  }
  const decision = await identity.delegated.authorize(a);
  if (!decision.allowed) throw forbiddenRequest(identity.user, a, decision.reason);
}

/** Whether `object` of `resource` exists for `identity` (read, list, watch). */
export function canSee(identity: Identity, resource: KpassResource, object: StoredObject): boolean {
  if (identity.isAdmin || identity.delegated) return true;
  if (resource === "passes") return object.metadata.name === identity.pass;
  return identity.reachesCluster(object);
}

/** Cluster credentials are shown to admin passes only. */
export function seesCredentials(identity: Identity): boolean {
  return identity.isAdmin;
}

/** Throws 403 unless `identity` may fetch the kubeconfig of pass `name`. */
export function authorizeKubeconfig(identity: Identity, name: string): void {
  if (identity.delegated) return;
  if (!identity.isAdmin && identity.pass !== name) throw refuse(identity, attributes("get", "passes", name, "kubeconfig"), "may only fetch its own kubeconfig");
}

/** Throws 403 unless `identity` may have a client certificate issued for pass `name` (admin, or the pass itself). */
export function authorizeCertificate(identity: Identity, name: string): void {
  if (identity.delegated) return;
  if (!identity.isAdmin && identity.pass !== name) throw refuse(identity, attributes("create", "passes", name, "certificate"), "may only request certificates for itself");
}

const METRICS_RULE: PolicyRule = { verbs: ["get"], nonResourceURLs: ["/metrics"] };

/**
 * Whether a pass's own rules name `get` on `/metrics`. Only the literal path counts: a wildcard
 * (cluster-admin's `nonResourceURLs: ["*"]`) is written for the clusters a pass reaches, and
 * kpass's metrics count the traffic of every cluster, so reading them must be asked for by name.
 */
function grantsMetrics(rules: readonly PolicyRule[]): boolean {
  return rules.some((r) => (r.verbs.includes("get") || r.verbs.includes("*")) && (r.nonResourceURLs ?? []).includes("/metrics"));
}

/** Whether `identity` may read kpass's /metrics: an admin pass, or a pass with a `get` rule on the non-resource URL `/metrics`. */
export function canReadMetrics(identity: Identity): boolean {
  return identity.isAdmin || identity.delegated !== undefined || grantsMetrics(identity.rules);
}

/** Throws 403 unless `identity` may read /metrics. */
export function authorizeMetrics(identity: Identity): void {
  if (!canReadMetrics(identity)) {
    throw refuse(identity, { isResourceRequest: false, verb: "get", apiGroup: "", apiVersion: "", resource: "", subresource: "", namespace: "", name: "", path: "/metrics" }, "is not an admin pass and has no rule allowing get on the non-resource URL /metrics");
  }
}

/**
 * The same decisions as rules, for `kubectl auth can-i --list` and access reviews on kpass's own
 * API: an admin pass may do anything there; any other pass may list and watch Clusters and Passes
 * (it sees only its own), read the Clusters it reaches and its own Pass and kubeconfig, and request
 * certificates for its own Pass.
 */
export function kpassRules(identity: Identity, reachableClusters: readonly string[]): PolicyRule[] {
  if (identity.isAdmin) return [{ verbs: ["*"], apiGroups: [GROUP], resources: ["*"] }, METRICS_RULE, ...IMPLICIT_RULES];
  const rules: PolicyRule[] = [{ verbs: ["list", "watch"], apiGroups: [GROUP], resources: ["clusters", "passes"] }];
  if (reachableClusters.length > 0) rules.push({ verbs: ["get"], apiGroups: [GROUP], resources: ["clusters"], resourceNames: [...reachableClusters] });
  rules.push({ verbs: ["get"], apiGroups: [GROUP], resources: ["passes", "passes/kubeconfig"], resourceNames: [identity.pass] });
  rules.push({ verbs: ["create"], apiGroups: [GROUP], resources: ["passes/certificate"], resourceNames: [identity.pass] });
  if (grantsMetrics(identity.rules)) rules.push(METRICS_RULE);
  return [...rules, ...IMPLICIT_RULES];
}
