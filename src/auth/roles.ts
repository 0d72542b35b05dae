/**
 * Built-in roles a Pass can name instead of spelling out rules. They follow Kubernetes' default
 * user-facing ClusterRoles (view, edit, admin, cluster-admin, as aggregated in current releases)
 * and carry no namespaces: the Pass that uses them decides where they apply.
 */
import type { PolicyRule } from "../core/pass.ts";

const READ = ["get", "list", "watch"];
const WRITE = ["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE = [...READ, ...WRITE];

function rule(verbs: readonly string[], apiGroups: readonly string[], resources: readonly string[]): PolicyRule {
  return { verbs: [...verbs], apiGroups: [...apiGroups], resources: [...resources] };
}

/** Read-only access to non-escalating namespaced resources: no secrets, no exec/attach/port-forward/proxy. */
const VIEW: readonly PolicyRule[] = [
  rule(READ, [""], [
    "pods",
    "pods/log",
    "pods/status",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "replicationcontrollers/status",
    "serviceaccounts",
    "services",
    "services/status",
    "endpoints",
    "persistentvolumeclaims",
    "persistentvolumeclaims/status",
    "configmaps",
    "limitranges",
    "resourcequotas",
    "resourcequotas/status",
    "bindings",
    "events",
    "namespaces",
    "namespaces/status",
  ]),
  rule(READ, ["apps"], [
    "controllerrevisions",
    "statefulsets",
    "statefulsets/status",
    "statefulsets/scale",
    "daemonsets",
    "daemonsets/status",
    "deployments",
    "deployments/status",
    "deployments/scale",
    "replicasets",
    "replicasets/status",
    "replicasets/scale",
  ]),
  rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
  rule(READ, ["batch"], ["jobs", "jobs/status", "cronjobs", "cronjobs/status"]),
  rule(READ, ["extensions"], [
    "daemonsets",
    "daemonsets/status",
    "deployments",
    "deployments/scale",
    "deployments/status",
    "ingresses",
    "ingresses/status",
    "replicasets",
    "replicasets/scale",
    "replicasets/status",
    "replicationcontrollers/scale",
    "networkpolicies",
  ]),
  rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
  rule(READ, ["networking.k8s.io"], ["networkpolicies", "ingresses", "ingresses/status"]),
  rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
  // metrics-server aggregates this into view, so `kubectl top` works for viewers.
  rule(READ, ["metrics.k8s.io"], ["pods", "nodes"]),
];

/** What edit adds to view: writes on workloads and config, secrets, exec/attach/port-forward/proxy, eviction. */
const EDIT_EXTRA: readonly PolicyRule[] = [
  rule(READ, [""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"]),
  rule(["impersonate"], [""], ["serviceaccounts"]),
  rule(WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
  rule(["create"], [""], ["pods/eviction"]),
  // No endpoints writes: Kubernetes took them out of edit (CVE-2021-25740).
  rule(WRITE, [""], [
    "configmaps",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "secrets",
    "serviceaccounts",
    "services",
    "services/proxy",
  ]),
  rule(WRITE, ["apps"], [
    "daemonsets",
    "deployments",
    "deployments/rollback",
    "deployments/scale",
    "replicasets",
    "replicasets/scale",
    "statefulsets",
    "statefulsets/scale",
  ]),
  rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
  rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
  rule(WRITE, ["extensions"], [
    "daemonsets",
    "deployments",
    "deployments/rollback",
    "deployments/scale",
    "ingresses",
    "networkpolicies",
    "replicasets",
    "replicasets/scale",
    "replicationcontrollers/scale",
  ]),
  rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
  rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
];

/** What admin adds to edit: granting permissions inside a namespace. */
const ADMIN_EXTRA: readonly PolicyRule[] = [
  rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
  rule(READ_WRITE, ["rbac.authorization.k8s.io"], ["roles", "rolebindings"]),
];

const CLUSTER_ADMIN: readonly PolicyRule[] = [
  { verbs: ["*"], apiGroups: ["*"], resources: ["*"] },
  { verbs: ["*"], nonResourceURLs: ["*"] },
];

const ROLES: ReadonlyMap<string, readonly PolicyRule[]> = new Map<string, readonly PolicyRule[]>([
  ["view", VIEW],
  ["edit", [...VIEW, ...EDIT_EXTRA]],
  ["admin", [...VIEW, ...EDIT_EXTRA, ...ADMIN_EXTRA]],
  ["cluster-admin", CLUSTER_ADMIN],
]);

export const builtInRoleNames: readonly string[] = Object.freeze([...ROLES.keys()]);

function copyRule(r: PolicyRule): PolicyRule {
  const out: PolicyRule = { verbs: [...r.verbs] };
  if (r.apiGroups) out.apiGroups = [...r.apiGroups];
  if (r.resources) out.resources = [...r.resources];
  if (r.resourceNames) out.resourceNames = [...r.resourceNames];
  if (r.namespaces) out.namespaces = [...r.namespaces];
  if (r.nonResourceURLs) out.nonResourceURLs = [...r.nonResourceURLs];
  return out;
}

/** The rules of a built-in role (a fresh copy the caller may change), or undefined for an unknown name. */
export function roleRules(name: string): PolicyRule[] | undefined {
  const rules = ROLES.get(name);
  return rules?.map(copyRule);
}
