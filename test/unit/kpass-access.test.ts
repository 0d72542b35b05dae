/**
 * Who may do what on kpass's own API (auth/kpass-access.ts), and the kube-apiserver wording of its
 * refusals (auth/forbidden.ts). The wording is pinned exactly: scripts and kubectl users grep for
 * `is forbidden: User "…" cannot <verb> resource "…"`, so a drift here is a user-visible break.
 */
import { describe, expect, test } from "bun:test";
import { forbiddenPhrase, forbiddenRequest } from "../../src/auth/forbidden.ts";
import type { Identity } from "../../src/auth/identity.ts";
import { authorizeKubeconfig, authorizeMetrics, authorizeWrite, canSee, kpassRules, seesCredentials } from "../../src/auth/kpass-access.ts";
import { roleRules } from "../../src/auth/roles.ts";
import type { PolicyRule } from "../../src/core/pass.ts";
import type { RequestAttributes } from "../../src/auth/request-attributes.ts";
import { API_VERSION, GROUP } from "../../src/core/api-group.ts";
import type { StoredObject } from "../../src/core/object.ts";
import { ApiError } from "../../src/core/status.ts";

function identity(pass: string, user: string, options: { admin?: boolean; clusters?: string[]; rules?: PolicyRule[] } = {}): Identity {
  const reach = new Set(options.clusters ?? []);
  return {
    pass,
    passUid: `uid-${pass}`,
    user,
    groups: [],
    isAdmin: options.admin === true,
    rules: options.rules ?? [],
    reachesCluster: (cluster) => reach.has(cluster.metadata.name),
  };
}

const admin = identity("root", "kpass-admin", { admin: true });
const alice = identity("alice", "alice", { clusters: ["prod"] });

function object(kind: "Cluster" | "Pass", name: string): StoredObject {
  return { apiVersion: API_VERSION, kind, metadata: { name, uid: `uid-${name}`, resourceVersion: "1", generation: 1, creationTimestamp: "2024-01-01T00:00:00Z" } };
}

function refusal(fn: () => void): ApiError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected a 403");
}

const NOT_ADMIN = `pass "alice" is not an admin pass: only an admin pass may change kpass's objects`;

describe("authorizeWrite", () => {
  test("an admin pass may write every kpass resource", () => {
    for (const verb of ["create", "update", "patch", "delete", "deletecollection"]) {
      for (const resource of ["clusters", "passes"] as const) expect(() => authorizeWrite(admin, verb, resource, "x")).not.toThrow();
    }
    expect(() => authorizeWrite(admin, "update", "clusters", "prod", "status")).not.toThrow();
  });

  test("a non-admin pass gets kube-apiserver's 403, word for word", () => {
    const error = refusal(() => authorizeWrite(alice, "delete", "passes", "x"));
    expect(error.code).toBe(403);
    expect(error.reason).toBe("Forbidden");
    expect(error.message).toBe(`passes.cluster.kpass.dev "x" is forbidden: User "alice" cannot delete resource "passes" in API group "cluster.kpass.dev" at the cluster scope: ${NOT_ADMIN}`);
    expect(error.details).toEqual({ group: GROUP, kind: "passes", name: "x" });
  });

  test("every write verb on every resource is refused, naming verb and resource", () => {
    for (const verb of ["create", "update", "patch", "delete"]) {
      for (const resource of ["clusters", "passes"] as const) {
        const error = refusal(() => authorizeWrite(alice, verb, resource, "prod"));
        expect(error.message).toBe(`${resource}.cluster.kpass.dev "prod" is forbidden: User "alice" cannot ${verb} resource "${resource}" in API group "cluster.kpass.dev" at the cluster scope: ${NOT_ADMIN}`);
        expect(error.details).toEqual({ group: GROUP, kind: resource, name: "prod" });
      }
    }
  });

  test("a non-admin may not write even its own pass or a cluster it reaches", () => {
    expect(refusal(() => authorizeWrite(alice, "patch", "passes", "alice")).code).toBe(403);
    expect(refusal(() => authorizeWrite(alice, "update", "clusters", "prod")).code).toBe(403);
  });

  test("a subresource is named in the phrase; details keep the resource alone, as apimachinery does", () => {
    const error = refusal(() => authorizeWrite(alice, "update", "clusters", "prod", "status"));
    expect(error.message).toBe(`clusters.cluster.kpass.dev "prod" is forbidden: User "alice" cannot update resource "clusters/status" in API group "cluster.kpass.dev" at the cluster scope: ${NOT_ADMIN}`);
    expect(error.details).toEqual({ group: GROUP, kind: "clusters", name: "prod" });
  });

  test("a create without a name has no quoted name and no details.name", () => {
    const error = refusal(() => authorizeWrite(alice, "create", "clusters", ""));
    expect(error.message).toBe(`clusters.cluster.kpass.dev is forbidden: User "alice" cannot create resource "clusters" in API group "cluster.kpass.dev" at the cluster scope: ${NOT_ADMIN}`);
    expect(error.details).toEqual({ group: GROUP, kind: "clusters" });
  });

  test("User is the pass's user, and the reason names the pass", () => {
    const laptop = identity("alice-laptop", "alice@example.com");
    const error = refusal(() => authorizeWrite(laptop, "delete", "passes", "bob"));
    expect(error.message).toBe(
      `passes.cluster.kpass.dev "bob" is forbidden: User "alice@example.com" cannot delete resource "passes" in API group "cluster.kpass.dev" at the cluster scope: pass "alice-laptop" is not an admin pass: only an admin pass may change kpass's objects`,
    );
  });

  test("the Status object a client receives carries the same code, reason and details", () => {
    const status = refusal(() => authorizeWrite(alice, "delete", "passes", "x")).toStatus();
    expect(status).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `passes.cluster.kpass.dev "x" is forbidden: User "alice" cannot delete resource "passes" in API group "cluster.kpass.dev" at the cluster scope: ${NOT_ADMIN}`,
      reason: "Forbidden",
      details: { group: GROUP, kind: "passes", name: "x" },
      code: 403,
    });
  });
});

describe("canSee", () => {
  test("clusters: a non-admin sees exactly the clusters it reaches", () => {
    expect(canSee(alice, "clusters", object("Cluster", "prod"))).toBe(true);
    expect(canSee(alice, "clusters", object("Cluster", "staging"))).toBe(false);
  });

  test("passes: a non-admin sees only its own, by pass name (not by user)", () => {
    expect(canSee(alice, "passes", object("Pass", "alice"))).toBe(true);
    expect(canSee(alice, "passes", object("Pass", "bob"))).toBe(false);
    // A pass whose user happens to be another pass's name does not see that pass.
    const named = identity("alice-ci", "bob");
    expect(canSee(named, "passes", object("Pass", "bob"))).toBe(false);
    expect(canSee(named, "passes", object("Pass", "alice-ci"))).toBe(true);
  });

  test("reaching a cluster named like a pass does not reveal the pass", () => {
    const reachesBob = identity("carol", "carol", { clusters: ["bob"] });
    expect(canSee(reachesBob, "clusters", object("Cluster", "bob"))).toBe(true);
    expect(canSee(reachesBob, "passes", object("Pass", "bob"))).toBe(false);
  });

  test("an admin sees every cluster and every pass, reach or not", () => {
    expect(canSee(admin, "clusters", object("Cluster", "staging"))).toBe(true);
    expect(canSee(admin, "passes", object("Pass", "bob"))).toBe(true);
  });

  test("credentials: admin only", () => {
    expect(seesCredentials(admin)).toBe(true);
    expect(seesCredentials(alice)).toBe(false);
  });
});

describe("authorizeKubeconfig", () => {
  test("a pass may fetch its own kubeconfig; an admin any", () => {
    expect(() => authorizeKubeconfig(alice, "alice")).not.toThrow();
    expect(() => authorizeKubeconfig(admin, "alice")).not.toThrow();
    expect(() => authorizeKubeconfig(admin, "bob")).not.toThrow();
  });

  test("another pass's kubeconfig: 403 on the kubeconfig subresource", () => {
    const error = refusal(() => authorizeKubeconfig(alice, "bob"));
    expect(error.code).toBe(403);
    expect(error.reason).toBe("Forbidden");
    expect(error.message).toBe(
      `passes.cluster.kpass.dev "bob" is forbidden: User "alice" cannot get resource "passes/kubeconfig" in API group "cluster.kpass.dev" at the cluster scope: pass "alice" may only fetch its own kubeconfig`,
    );
    expect(error.details).toEqual({ group: GROUP, kind: "passes", name: "bob" });
  });

  test("own means the pass name, not the user name", () => {
    const laptop = identity("alice-laptop", "alice");
    expect(() => authorizeKubeconfig(laptop, "alice-laptop")).not.toThrow();
    expect(refusal(() => authorizeKubeconfig(laptop, "alice")).code).toBe(403);
  });
});

describe("authorizeMetrics", () => {
  test("an admin may read /metrics", () => {
    expect(() => authorizeMetrics(admin)).not.toThrow();
  });

  test("a non-admin gets the non-resource 403 of kube-apiserver, with empty details", () => {
    const error = refusal(() => authorizeMetrics(alice));
    expect(error.code).toBe(403);
    expect(error.reason).toBe("Forbidden");
    expect(error.message).toBe(`forbidden: User "alice" cannot get path "/metrics": pass "alice" is not an admin pass and has no rule allowing get on the non-resource URL /metrics`);
    expect(error.details).toEqual({});
  });

  test("a pass whose rules name get on /metrics may read it, and can-i --list says so", () => {
    for (const verbs of [["get"], ["*"], ["get", "list"]]) {
      const prometheus = identity("prometheus", "prometheus", { rules: [{ verbs, nonResourceURLs: ["/metrics"] }] });
      expect(() => authorizeMetrics(prometheus)).not.toThrow();
      expect(kpassRules(prometheus, [])).toContainEqual({ verbs: ["get"], nonResourceURLs: ["/metrics"] });
    }
  });

  test("wildcards written for clusters do not open kpass's metrics (they count every cluster's traffic)", () => {
    const cases: PolicyRule[][] = [roleRules("cluster-admin")!, [{ verbs: ["get"], nonResourceURLs: ["/metr*"] }], [{ verbs: ["list"], nonResourceURLs: ["/metrics"] }], [{ verbs: ["get"], nonResourceURLs: ["/healthz"] }]];
    for (const rules of cases) {
      const pass = identity("ops", "ops", { rules });
      expect(refusal(() => authorizeMetrics(pass)).code).toBe(403);
      expect(kpassRules(pass, []).some((r) => r.nonResourceURLs?.includes("/metrics"))).toBe(false);
    }
  });
});

describe("forbidden.ts", () => {
  const podRead: RequestAttributes = { isResourceRequest: true, verb: "get", apiGroup: "", apiVersion: "v1", resource: "pods", subresource: "log", namespace: "team-a", name: "web", path: "" };

  test("a namespaced request is phrased with its namespace", () => {
    expect(forbiddenPhrase("alice", podRead)).toBe('User "alice" cannot get resource "pods/log" in API group "" in the namespace "team-a"');
  });

  test("the core group has an unqualified resource in the message and no details.group", () => {
    const error = forbiddenRequest("alice", podRead, "no rule allows it");
    expect(error.message).toBe('pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "team-a": no rule allows it');
    expect(error.details).toEqual({ kind: "pods", name: "web" });
  });

  test("without a reason there is no trailing colon", () => {
    const error = forbiddenRequest("alice", { ...podRead, subresource: "" }, "");
    expect(error.message).toBe('pods "web" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "team-a"');
  });

  test("quotes in the user and the resource are escaped, so the quoted parts stay unambiguous", () => {
    const error = forbiddenRequest('ev"il', { ...podRead, resource: 'po"ds', subresource: "" }, "x");
    expect(error.message).toContain('is forbidden: User "ev\\"il" cannot get resource "po\\"ds" in API group "" in the namespace "team-a": x');
  });
});
