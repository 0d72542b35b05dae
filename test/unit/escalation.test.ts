import { describe, expect, test } from "bun:test";
import { checkRbacWrite, checkRbacWriteBody, rbacWriteNeedsBody, rbacWriteNeedsCheck, type EscalationSubject, type RbacWriteAttributes } from "../../src/auth/escalation.ts";
import { requestAttributes } from "../../src/auth/request-attributes.ts";
import { roleRules } from "../../src/auth/roles.ts";
import type { PolicyRule } from "../../src/core/pass.ts";

const inNamespace = (rules: PolicyRule[], ns: string): PolicyRule[] => rules.map((r) => ({ ...r, namespaces: [ns] }));
const subject = (rules: PolicyRule[]): EscalationSubject => ({ user: "alice", groups: ["devs", "qa"], rules });
const adminInTeamA = subject(inNamespace(roleRules("admin")!, "team-a"));
const clusterAdmin = subject(roleRules("cluster-admin")!);

function attrs(method: string, path: string): RbacWriteAttributes {
  return requestAttributes(method, path, new URLSearchParams());
}

const ROLES = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles";
const BINDINGS = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings";
const CLUSTER_ROLES = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
const CLUSTER_BINDINGS = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

const role = (name: string, rules: unknown[]) => ({ apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name, namespace: "team-a" }, rules });
const binding = (name: string, kind: string, roleName: string) => ({
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "RoleBinding",
  metadata: { name },
  roleRef: { apiGroup: "rbac.authorization.k8s.io", kind, name: roleName },
  subjects: [{ kind: "ServiceAccount", name: "default", namespace: "team-a" }],
});

describe("when kpass checks", () => {
  test("RBAC writes on clusters that do not impersonate", () => {
    const a = attrs("POST", ROLES);
    expect(rbacWriteNeedsCheck({ spec: {} }, a)).toBe(true);
    expect(rbacWriteNeedsCheck({ spec: { impersonation: "none" } }, a)).toBe(true);
    expect(rbacWriteNeedsCheck({ spec: { impersonation: "user" } }, a)).toBe(false);
    for (const [method, path] of [["PUT", `${ROLES}/r`], ["PATCH", `${BINDINGS}/b`], ["POST", CLUSTER_ROLES], ["POST", CLUSTER_BINDINGS]] as const) {
      expect(rbacWriteNeedsCheck({ spec: {} }, attrs(method, path))).toBe(true);
    }
    for (const [method, path] of [["GET", `${ROLES}/r`], ["DELETE", `${ROLES}/r`], ["POST", "/api/v1/namespaces/team-a/pods"], ["POST", "/apis/example.com/v1/namespaces/team-a/roles"]] as const) {
      expect(rbacWriteNeedsCheck({ spec: {} }, attrs(method, path))).toBe(false);
    }
  });

  test("the body is not needed when the pass may escalate roles", () => {
    const escalate = subject([{ verbs: ["escalate", "create"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["roles"] }]);
    expect(rbacWriteNeedsBody({ spec: {} }, escalate, attrs("POST", ROLES))).toBe(false);
    expect(rbacWriteNeedsBody({ spec: {} }, adminInTeamA, attrs("POST", ROLES))).toBe(true);
    expect(rbacWriteNeedsBody({ spec: {} }, escalate, attrs("POST", BINDINGS))).toBe(true);
  });
});

describe("Roles and ClusterRoles", () => {
  test("a Role with * is refused for an admin-in-namespace pass, worded as kube-apiserver words it", () => {
    const error = checkRbacWrite(adminInTeamA, attrs("POST", ROLES), role("x", [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }]));
    expect(error?.code).toBe(403);
    expect(error?.reason).toBe("Forbidden");
    expect(error?.message).toBe(
      'roles.rbac.authorization.k8s.io "x" is forbidden: user "alice" (groups=["devs" "qa"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}',
    );
    expect(error?.details).toEqual({ name: "x", group: "rbac.authorization.k8s.io", kind: "roles" });
  });

  test("missing permissions are listed compactly, one line per group/resource, sorted", () => {
    const error = checkRbacWrite(adminInTeamA, attrs("POST", ROLES), role("x", [
      { verbs: ["get", "list"], apiGroups: [""], resources: ["pods", "nodes"] },
      { verbs: ["get", "delete"], apiGroups: [""], resources: ["persistentvolumes"], resourceNames: ["pv1"] },
    ]));
    expect(error?.message.split("\n").slice(1)).toEqual([
      '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}',
      '{APIGroups:[""], Resources:["persistentvolumes"], ResourceNames:["pv1"], Verbs:["get" "delete"]}',
    ]);
  });

  test("a Role within what the pass holds in that namespace is allowed, and not in another namespace", () => {
    const body = role("reader", [{ verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["pods", "pods/log"] }, { verbs: ["get"], apiGroups: ["apps"], resources: ["deployments"], resourceNames: ["web"] }]);
    expect(checkRbacWrite(adminInTeamA, attrs("POST", ROLES), body)).toBeUndefined();
    expect(checkRbacWrite(adminInTeamA, attrs("PUT", `${ROLES}/reader`), body)).toBeUndefined();
    const elsewhere = checkRbacWrite(adminInTeamA, attrs("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team-b/roles"), body);
    expect(elsewhere?.code).toBe(403);
  });

  test("escalate on roles allows any Role", () => {
    const pass = subject([...inNamespace(roleRules("admin")!, "team-a"), { verbs: ["escalate"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["roles"], namespaces: ["team-a"] }]);
    expect(checkRbacWrite(pass, attrs("POST", ROLES), role("x", [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }]))).toBeUndefined();
  });

  test("a ClusterRole needs the permissions cluster-wide: a pass holding them only in a namespace is refused", () => {
    const body = { kind: "ClusterRole", metadata: { name: "pod-reader" }, rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"] }] };
    expect(checkRbacWrite(adminInTeamA, attrs("POST", CLUSTER_ROLES), body)?.code).toBe(403);
    expect(checkRbacWrite(subject(roleRules("view")!), attrs("POST", CLUSTER_ROLES), body)).toBeUndefined();
  });

  test("an aggregationRule needs cluster-admin", () => {
    const body = { kind: "ClusterRole", metadata: { name: "agg" }, aggregationRule: { clusterRoleSelectors: [{ matchLabels: { x: "y" } }] }, rules: [] };
    expect(checkRbacWrite(subject(roleRules("edit")!), attrs("POST", CLUSTER_ROLES), body)?.message).toContain("must have cluster-admin privileges to use the aggregationRule");
    expect(checkRbacWrite(clusterAdmin, attrs("POST", CLUSTER_ROLES), body)).toBeUndefined();
  });

  test("kpass's owner forms pods/* and */scale cover the subresources they name", () => {
    const pass = subject([{ verbs: ["get"], apiGroups: [""], resources: ["pods/*"] }, { verbs: ["get"], apiGroups: ["apps"], resources: ["*/scale"] }]);
    expect(checkRbacWrite(pass, attrs("POST", ROLES), role("r", [{ verbs: ["get"], apiGroups: [""], resources: ["pods/log", "pods/exec"] }, { verbs: ["get"], apiGroups: ["apps"], resources: ["deployments/scale"] }]))).toBeUndefined();
    expect(checkRbacWrite(pass, attrs("POST", ROLES), role("r", [{ verbs: ["get"], apiGroups: [""], resources: ["pods"] }]))?.code).toBe(403);
  });

  test("a resourceNames-restricted pass cannot grant the whole resource", () => {
    const pass = subject([{ verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }]);
    expect(checkRbacWrite(pass, attrs("POST", ROLES), role("r", [{ verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }]))).toBeUndefined();
    expect(checkRbacWrite(pass, attrs("POST", ROLES), role("r", [{ verbs: ["get"], apiGroups: [""], resources: ["configmaps"] }]))?.code).toBe(403);
  });

  test("patches: rules in a merge patch are checked; a patch that leaves them unknown, or a JSON patch, is refused", () => {
    const a = attrs("PATCH", `${ROLES}/r`);
    const merge = "application/merge-patch+json";
    expect(checkRbacWrite(adminInTeamA, a, { rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"] }] }, merge)).toBeUndefined();
    expect(checkRbacWrite(adminInTeamA, a, { rules: [{ verbs: ["get"], apiGroups: [""], resources: ["nodes"] }] }, "application/strategic-merge-patch+json")?.code).toBe(403);
    const labelsOnly = checkRbacWrite(adminInTeamA, a, { metadata: { labels: { a: "b" } } }, merge);
    expect(labelsOnly?.code).toBe(403);
    expect(labelsOnly?.message).toContain("fail closed");
    expect(checkRbacWrite(adminInTeamA, a, [{ op: "add", path: "/rules/-", value: {} }], "application/json-patch+json")?.code).toBe(403);
    expect(checkRbacWrite(adminInTeamA, a, { rules: [{ $patch: "delete" }] }, "application/strategic-merge-patch+json")?.code).toBe(403);
    expect(checkRbacWrite(adminInTeamA, a, { rules: [] })?.code).toBe(415);
  });

  test("a field spelled in another case is refused rather than ignored", () => {
    const error = checkRbacWrite(adminInTeamA, attrs("POST", ROLES), { metadata: { name: "x" }, rules: [], Rules: [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }] });
    expect(error?.code).toBe(400);
  });

  test("a body that would take too long to check is refused", () => {
    const many = Array.from({ length: 400 }, (_, i) => `r${i}`);
    const error = checkRbacWrite(adminInTeamA, attrs("POST", ROLES), role("x", [{ verbs: many, apiGroups: many, resources: many }]));
    expect(error?.code).toBe(403);
    expect(error?.message).toContain("combinations");
  });
});

describe("RoleBindings and ClusterRoleBindings", () => {
  test("a RoleBinding to cluster-admin is refused for an admin-in-namespace pass", () => {
    const error = checkRbacWrite(adminInTeamA, attrs("POST", BINDINGS), binding("b", "ClusterRole", "cluster-admin"));
    expect(error?.code).toBe(403);
    expect(error?.message).toStartWith('rolebindings.rbac.authorization.k8s.io "b" is forbidden: user "alice" (groups=["devs" "qa"]) is attempting to grant RBAC permissions not currently held:\n');
    expect(error?.message).toContain('{APIGroups:["*"], Resources:["*"], Verbs:["*"]}');
  });

  test("a binding to view, edit or admin in its namespace is allowed for an admin-in-namespace pass", () => {
    for (const name of ["view", "edit", "admin"]) expect(checkRbacWrite(adminInTeamA, attrs("POST", BINDINGS), binding("b", "ClusterRole", name))).toBeUndefined();
    expect(checkRbacWrite(adminInTeamA, attrs("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team-b/rolebindings"), binding("b", "ClusterRole", "view"))?.code).toBe(403);
  });

  test("bind on the role allows the binding", () => {
    const bind: PolicyRule = { verbs: ["bind"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["clusterroles"], resourceNames: ["cluster-admin"], namespaces: ["team-a"] };
    const pass = subject([...inNamespace(roleRules("admin")!, "team-a"), bind]);
    expect(checkRbacWrite(pass, attrs("POST", BINDINGS), binding("b", "ClusterRole", "cluster-admin"))).toBeUndefined();
    // bind on a different name does not help
    expect(checkRbacWrite(pass, attrs("POST", BINDINGS), binding("b", "ClusterRole", "secret-reader"))?.code).toBe(403);
  });

  test("a binding to a role kpass cannot read is refused unless the pass has bind on it (fail closed)", () => {
    const unknown = checkRbacWrite(clusterAdmin, attrs("POST", BINDINGS), binding("b", "Role", "deployer"));
    expect(unknown).toBeUndefined(); // cluster-admin has bind on everything
    const refused = checkRbacWrite(adminInTeamA, attrs("POST", BINDINGS), binding("b", "Role", "deployer"));
    expect(refused?.code).toBe(403);
    expect(refused?.message).toContain('kpass cannot read roles.rbac.authorization.k8s.io "deployer"');
    expect(refused?.message).toContain("fail closed");
    expect(refused?.message).toContain('needs "bind" on roles "deployer" in namespace "team-a"');
    const pass = subject([...inNamespace(roleRules("admin")!, "team-a"), { verbs: ["bind"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["roles"], resourceNames: ["deployer"], namespaces: ["team-a"] }]);
    expect(checkRbacWrite(pass, attrs("POST", BINDINGS), binding("b", "Role", "deployer"))).toBeUndefined();
  });

  test("a ClusterRoleBinding needs the role's permissions cluster-wide", () => {
    const body = { kind: "ClusterRoleBinding", metadata: { name: "viewers" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "view" }, subjects: [] };
    expect(checkRbacWrite(adminInTeamA, attrs("POST", CLUSTER_BINDINGS), body)?.code).toBe(403);
    expect(checkRbacWrite(subject(roleRules("view")!), attrs("POST", CLUSTER_BINDINGS), body)).toBeUndefined();
  });

  test("a patch without the complete roleRef is refused", () => {
    const a = attrs("PATCH", `${BINDINGS}/b`);
    expect(checkRbacWrite(adminInTeamA, a, { subjects: [] }, "application/merge-patch+json")?.code).toBe(403);
    expect(checkRbacWrite(adminInTeamA, a, { roleRef: { kind: "ClusterRole", name: "view" } }, "application/merge-patch+json")).toBeUndefined();
  });
});

describe("buffered bodies", () => {
  const json = new Headers({ "content-type": "application/json" });
  const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

  test("JSON bodies are decoded and checked", () => {
    expect(checkRbacWriteBody(adminInTeamA, attrs("POST", BINDINGS), bytes(binding("b", "ClusterRole", "view")), json)).toBeUndefined();
    expect(checkRbacWriteBody(adminInTeamA, attrs("POST", BINDINGS), bytes(binding("b", "ClusterRole", "cluster-admin")), json)?.code).toBe(403);
  });

  test("protobuf, YAML and compressed bodies are refused with 415; broken JSON with 400", () => {
    const body = bytes(binding("b", "ClusterRole", "view"));
    expect(checkRbacWriteBody(adminInTeamA, attrs("POST", BINDINGS), body, new Headers({ "content-type": "application/vnd.kubernetes.protobuf" }))?.code).toBe(415);
    expect(checkRbacWriteBody(adminInTeamA, attrs("POST", BINDINGS), body, new Headers({ "content-type": "application/yaml" }))?.code).toBe(415);
    expect(checkRbacWriteBody(adminInTeamA, attrs("POST", BINDINGS), body, new Headers({ "content-type": "application/json", "content-encoding": "gzip" }))?.code).toBe(415);
    expect(checkRbacWriteBody(adminInTeamA, attrs("PATCH", `${BINDINGS}/b`), new TextEncoder().encode("roleRef:\n  kind: ClusterRole\n"), new Headers({ "content-type": "application/apply-patch+yaml" }))?.code).toBe(415);
    expect(checkRbacWriteBody(adminInTeamA, attrs("POST", BINDINGS), new TextEncoder().encode("{"), json)?.code).toBe(400);
  });

  test("a JSON server-side apply patch is read", () => {
    const apply = new Headers({ "content-type": "application/apply-patch+yaml" });
    expect(checkRbacWriteBody(adminInTeamA, attrs("PATCH", `${BINDINGS}/b`), bytes(binding("b", "ClusterRole", "edit")), apply)).toBeUndefined();
  });
});
