import { describe, expect, test } from "bun:test";
import { authorizeProxy, impersonationChecks, parseImpersonationHeaders, splitServiceAccountUsername } from "../../src/auth/authorize.ts";
import type { Identity } from "../../src/auth/identity.ts";
import { roleRules } from "../../src/auth/roles.ts";
import type { ClusterTransport } from "../../src/proxy/cluster-transport.ts";
import { escapeExtraKey, impersonationHeaderLines, upstreamHeaders } from "../../src/proxy/upstream-headers.ts";
import { ApiError } from "../../src/core/status.ts";
import type { Cluster } from "../../src/core/cluster.ts";
import type { PolicyRule } from "../../src/core/pass.ts";

function identity(rules: PolicyRule[]): Identity {
  return { pass: "alice", passUid: "u1", user: "alice", groups: ["devs"], isAdmin: false, rules, reachesCluster: () => true };
}

function cluster(impersonation?: "none" | "user"): Cluster {
  return {
    apiVersion: "cluster.kpass.dev/v1beta1",
    kind: "Cluster",
    metadata: { name: "prod", uid: "c1", resourceVersion: "1", generation: 1, creationTimestamp: new Date(0).toISOString() },
    spec: { access: { endpoint: "https://prod.example:6443", credential: { type: "ServiceAccountToken", serviceAccountToken: "t" } }, impersonation },
  } as Cluster;
}

const inNamespace = (rules: PolicyRule[], ns: string): PolicyRule[] => rules.map((r) => ({ ...r, namespaces: [ns] }));
const editInTeamA = inNamespace(roleRules("edit")!, "team-a");

function decide(rules: PolicyRule[], headers: Record<string, string>, path = "/api/v1/namespaces/team-a/pods") {
  return authorizeProxy(identity(rules), cluster(), { method: "GET", path, search: "", headers: new Headers(headers), upgrade: false });
}

function refusal(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected a refusal");
}

describe("service account names as kube-apiserver splits them", () => {
  test("system:serviceaccount:NS:NAME with a DNS-label namespace and DNS-subdomain name", () => {
    expect(splitServiceAccountUsername("system:serviceaccount:team-a:builder")).toEqual({ namespace: "team-a", name: "builder" });
    expect(splitServiceAccountUsername("system:serviceaccount:team-a:my.sa")).toEqual({ namespace: "team-a", name: "my.sa" });
  });
  test("anything else is an ordinary user name", () => {
    for (const user of ["alice", "system:serviceaccount:team-a", "system:serviceaccount:a:b:c", "system:serviceaccount:Team:x", "system:serviceaccount:a.b:x", "system:serviceaccount::x", "system:serviceaccounts:a:b"]) {
      expect(splitServiceAccountUsername(user)).toBeUndefined();
    }
  });
});

describe("impersonation checks", () => {
  test("--as system:serviceaccount:NS:NAME is checked as impersonate serviceaccounts NAME in NS (core group)", () => {
    const [check] = impersonationChecks({ user: "system:serviceaccount:team-a:builder", groups: [] });
    expect(check!.attributes).toMatchObject({ verb: "impersonate", apiGroup: "", resource: "serviceaccounts", subresource: "", namespace: "team-a", name: "builder" });
  });

  test("users and groups in the core group, extras and uids in authentication.k8s.io", () => {
    const checks = impersonationChecks({ user: "bob", groups: ["qa"], uid: "1234", extra: { scopes: ["view", "edit"] } }).map((c) => c.attributes);
    expect(checks).toEqual([
      expect.objectContaining({ verb: "impersonate", apiGroup: "", resource: "users", name: "bob", namespace: "" }),
      expect.objectContaining({ verb: "impersonate", apiGroup: "", resource: "groups", name: "qa" }),
      expect.objectContaining({ verb: "impersonate", apiGroup: "authentication.k8s.io", resource: "userextras", subresource: "scopes", name: "view" }),
      expect.objectContaining({ verb: "impersonate", apiGroup: "authentication.k8s.io", resource: "userextras", subresource: "scopes", name: "edit" }),
      expect.objectContaining({ verb: "impersonate", apiGroup: "authentication.k8s.io", resource: "uids", name: "1234" }),
    ]);
  });

  test("the built-in edit role lets a pass impersonate service accounts of its own namespace only", () => {
    const decision = decide(editInTeamA, { "Impersonate-User": "system:serviceaccount:team-a:builder" });
    expect(decision.impersonate).toEqual({ user: "system:serviceaccount:team-a:builder", groups: [] });
    const other = refusal(() => decide(editInTeamA, { "Impersonate-User": "system:serviceaccount:team-b:builder" }));
    expect(other.code).toBe(403);
    expect(other.message).toContain('has no impersonate rule for service account "builder" in namespace "team-b"');
  });

  test("edit does not let a pass impersonate a user, nor a group on top of a service account", () => {
    expect(refusal(() => decide(editInTeamA, { "Impersonate-User": "bob" })).message).toContain('has no impersonate rule for user "bob"');
    const withGroup = refusal(() => decide(editInTeamA, { "Impersonate-User": "system:serviceaccount:team-a:builder", "Impersonate-Group": "system:masters" }));
    expect(withGroup.message).toContain('has no impersonate rule for group "system:masters"');
  });

  test("a malformed service account name is checked as a user, as kube-apiserver does", () => {
    const refused = refusal(() => decide(editInTeamA, { "Impersonate-User": "system:serviceaccount:team-a:builder:x" }));
    expect(refused.message).toContain('has no impersonate rule for user "system:serviceaccount:team-a:builder:x"');
  });

  test("Impersonate-Uid and Impersonate-Extra-* are checked and forwarded, never forwarded unchecked", () => {
    const pods: PolicyRule = { verbs: ["list"], apiGroups: [""], resources: ["pods"] };
    const users: PolicyRule = { verbs: ["impersonate"], apiGroups: [""], resources: ["users"], resourceNames: ["bob"] };
    const headers = { "Impersonate-User": "bob", "Impersonate-Uid": "1234", "Impersonate-Extra-Scopes": "view" };
    expect(refusal(() => decide([pods, users], headers)).message).toContain('has no impersonate rule for extra "scopes"="view"');
    const extras: PolicyRule = { verbs: ["impersonate"], apiGroups: ["authentication.k8s.io"], resources: ["userextras/scopes"] };
    expect(refusal(() => decide([pods, users, extras], headers)).message).toContain('has no impersonate rule for uid "1234"');
    const uids: PolicyRule = { verbs: ["impersonate"], apiGroups: ["authentication.k8s.io"], resources: ["uids"], resourceNames: ["1234"] };
    const decision = decide([pods, users, extras, uids], headers);
    expect(decision.impersonate).toEqual({ user: "bob", groups: [], uid: "1234", extra: { scopes: ["view"] } });
  });

  test("extra keys are percent-decoded as kube-apiserver does, and re-encoded so that it reads the same key", () => {
    const asked = parseImpersonationHeaders(new Headers({ "Impersonate-User": "bob", "Impersonate-Extra-Example.com%2fTeam": "a, b" }));
    expect(asked?.extra).toEqual({ "example.com/team": ["a", "b"] });
    const upper = parseImpersonationHeaders(new Headers({ "Impersonate-User": "bob", "Impersonate-Extra-%41bc": "x" }));
    expect(upper?.extra).toEqual({ Abc: ["x"] });
    expect(escapeExtraKey("Abc")).toBe("%41bc");
    expect(escapeExtraKey("example.com/team")).toBe("example.com%2fteam");
    expect(parseImpersonationHeaders(new Headers({ "Impersonate-User": "bob", [`Impersonate-Extra-${escapeExtraKey("Example.com/Team é")}`]: "x" }))?.extra).toEqual({ "Example.com/Team é": ["x"] });
    expect(escapeExtraKey("100%")).toBe("100%25");
  });

  test("groups, extras or a uid without a user are a bad request; unknown Impersonate-* headers are refused", () => {
    expect(refusal(() => parseImpersonationHeaders(new Headers({ "Impersonate-Group": "qa" }))).code).toBe(400);
    expect(refusal(() => parseImpersonationHeaders(new Headers({ "Impersonate-Uid": "1" }))).code).toBe(400);
    expect(refusal(() => parseImpersonationHeaders(new Headers({ "Impersonate-User": "bob", "Impersonate-Foo": "x" }))).code).toBe(403);
    expect(refusal(() => parseImpersonationHeaders(new Headers({ "Impersonate-User": "bob", "Impersonate-Group": "" }))).code).toBe(400);
    expect(parseImpersonationHeaders(new Headers({ Accept: "application/json" }))).toBeUndefined();
  });

  test("discovery is answered as the pass even when its impersonation is refused", () => {
    const decision = decide(editInTeamA, { "Impersonate-User": "bob" }, "/api");
    expect(decision.impersonate).toBeUndefined();
  });
});

describe("outgoing impersonation headers", () => {
  const transport: ClusterTransport = {
    cluster: "c",
    endpoint: new URL("https://cluster.example:6443"),
    tls: { rejectUnauthorized: true },
    bearerToken: "t",
    fetch: () => Promise.reject(new Error("unused")),
    close: () => {},
  } as unknown as ClusterTransport;

  test("uid and extras are forwarded only as kpass chose them", () => {
    const client = new Headers({ "Impersonate-User": "root", "Impersonate-Uid": "0", "Impersonate-Extra-Scopes": "all", "Impersonate-Extra-Other": "x" });
    const out = upstreamHeaders(client, transport, { user: "bob", groups: ["qa"], uid: "1234", extra: { scopes: ["view"] } });
    expect(out.get("impersonate-user")).toBe("bob");
    expect(out.get("impersonate-group")).toBe("qa");
    expect(out.get("impersonate-uid")).toBe("1234");
    expect(out.get("impersonate-extra-scopes")).toBe("view");
    expect(out.has("impersonate-extra-other")).toBe(false);
  });

  test("an escaped extra key passes the outgoing check and is read back as the same key", () => {
    const out = upstreamHeaders(new Headers(), transport, { user: "bob", groups: [], extra: { "example.com/Team": ["a"] } });
    const back = parseImpersonationHeaders(out);
    expect(back?.extra).toEqual({ "example.com/Team": ["a"] });
  });

  test("without a chosen uid or extras none is forwarded", () => {
    const out = upstreamHeaders(new Headers({ "Impersonate-Uid": "0", "Impersonate-Extra-Scopes": "all" }), transport, { user: "bob", groups: [] });
    expect(out.has("impersonate-uid")).toBe(false);
    expect(out.has("impersonate-extra-scopes")).toBe(false);
  });

  test("header lines carry one group and one extra value each", () => {
    expect(impersonationHeaderLines({ user: "bob", groups: ["a", "b"], extra: { "example.com/k": ["1", "2"] } })).toEqual([
      ["impersonate-user", "bob"],
      ["impersonate-group", "a"],
      ["impersonate-group", "b"],
      ["impersonate-extra-example.com%2fk", "1"],
      ["impersonate-extra-example.com%2fk", "2"],
    ]);
  });
});
