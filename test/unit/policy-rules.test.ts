import { describe, expect, test } from "bun:test";
import { ruleAllows, rulesAllow, validateRules } from "../../src/auth/policy-rules.ts";
import { requestAttributes, type RequestAttributes } from "../../src/auth/request-attributes.ts";
import { builtInRoleNames, roleRules } from "../../src/auth/roles.ts";
import type { PolicyRule } from "../../src/core/pass.ts";

/** Attributes of "METHOD /path?query", parsed the way the gateway does. */
function req(method: string, url: string, upgrade = false): RequestAttributes {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  return requestAttributes(method, path, new URLSearchParams(q < 0 ? "" : url.slice(q + 1)), { upgrade });
}

/** Attributes the caller builds for an Impersonate-* header. */
function impersonate(resource: "users" | "groups" | "serviceaccounts", name: string, namespace = ""): RequestAttributes {
  return {
    isResourceRequest: true,
    verb: "impersonate",
    apiGroup: "",
    apiVersion: "",
    resource,
    subresource: "",
    namespace,
    name,
    path: "",
  };
}

interface Case {
  what: string;
  rule: PolicyRule;
  request: RequestAttributes;
  allowed: boolean;
}

const podsRead: PolicyRule = { verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["pods"] };

const cases: Case[] = [
  // verbs
  { what: "verb listed", rule: podsRead, request: req("GET", "/api/v1/namespaces/a/pods/p"), allowed: true },
  { what: "list allowed", rule: podsRead, request: req("GET", "/api/v1/namespaces/a/pods?limit=500"), allowed: true },
  { what: "watch allowed", rule: podsRead, request: req("GET", "/api/v1/pods?watch=true"), allowed: true },
  { what: "verb not listed (delete)", rule: podsRead, request: req("DELETE", "/api/v1/namespaces/a/pods/p"), allowed: false },
  { what: "verb not listed (deletecollection)", rule: podsRead, request: req("DELETE", "/api/v1/namespaces/a/pods"), allowed: false },
  {
    what: "get does not grant list",
    rule: { verbs: ["get"], apiGroups: [""], resources: ["pods"] },
    request: req("GET", "/api/v1/namespaces/a/pods"),
    allowed: false,
  },
  {
    what: "verb wildcard",
    rule: { verbs: ["*"], apiGroups: [""], resources: ["pods"] },
    request: req("DELETE", "/api/v1/namespaces/a/pods"),
    allowed: true,
  },
  {
    what: "unknown HTTP method gives no verb; only * matches it",
    rule: podsRead,
    request: req("OPTIONS", "/api/v1/namespaces/a/pods"),
    allowed: false,
  },
  // apiGroups
  { what: "core rule does not match apps", rule: { verbs: ["get"], apiGroups: [""], resources: ["deployments"] }, request: req("GET", "/apis/apps/v1/namespaces/a/deployments/d"), allowed: false },
  { what: "group listed", rule: { verbs: ["get"], apiGroups: ["apps"], resources: ["deployments"] }, request: req("GET", "/apis/apps/v1/namespaces/a/deployments/d"), allowed: true },
  { what: "group wildcard", rule: { verbs: ["get"], apiGroups: ["*"], resources: ["deployments"] }, request: req("GET", "/apis/extensions/v1beta1/namespaces/a/deployments/d"), allowed: true },
  { what: "absent apiGroups matches nothing", rule: { verbs: ["get"], resources: ["pods"] }, request: req("GET", "/api/v1/namespaces/a/pods/p"), allowed: false },
  // resources and subresources
  { what: "pods does not grant pods/exec", rule: { verbs: ["*"], apiGroups: [""], resources: ["pods"] }, request: req("POST", "/api/v1/namespaces/a/pods/p/exec?command=sh"), allowed: false },
  { what: "pods does not grant pods/log", rule: podsRead, request: req("GET", "/api/v1/namespaces/a/pods/p/log"), allowed: false },
  { what: "pods/exec create grants SPDY exec", rule: { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"] }, request: req("POST", "/api/v1/namespaces/a/pods/p/exec?command=sh"), allowed: true },
  { what: "pods/exec create grants WebSocket exec (a GET)", rule: { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"] }, request: req("GET", "/api/v1/namespaces/a/pods/p/exec?command=sh"), allowed: true },
  { what: "pods/exec get does not grant WebSocket exec", rule: { verbs: ["get"], apiGroups: [""], resources: ["pods/exec"] }, request: req("GET", "/api/v1/namespaces/a/pods/p/exec?command=sh"), allowed: false },
  { what: "pods/exec does not grant pods", rule: { verbs: ["*"], apiGroups: [""], resources: ["pods/exec"] }, request: req("GET", "/api/v1/namespaces/a/pods/p"), allowed: false },
  { what: "pods/exec does not grant pods/attach", rule: { verbs: ["*"], apiGroups: [""], resources: ["pods/exec"] }, request: req("POST", "/api/v1/namespaces/a/pods/p/attach"), allowed: false },
  { what: "*/status grants pods/status", rule: { verbs: ["get"], apiGroups: [""], resources: ["*/status"] }, request: req("GET", "/api/v1/namespaces/a/pods/p/status"), allowed: true },
  { what: "*/status grants services/status", rule: { verbs: ["get"], apiGroups: [""], resources: ["*/status"] }, request: req("GET", "/api/v1/namespaces/a/services/s/status"), allowed: true },
  { what: "*/status does not grant the object", rule: { verbs: ["get"], apiGroups: [""], resources: ["*/status"] }, request: req("GET", "/api/v1/namespaces/a/pods/p"), allowed: false },
  { what: "*/status does not grant pods/log", rule: { verbs: ["get"], apiGroups: [""], resources: ["*/status"] }, request: req("GET", "/api/v1/namespaces/a/pods/p/log"), allowed: false },
  { what: "pods/* grants pods/portforward", rule: { verbs: ["create"], apiGroups: [""], resources: ["pods/*"] }, request: req("POST", "/api/v1/namespaces/a/pods/p/portforward"), allowed: true },
  { what: "pods/* does not grant pods itself", rule: { verbs: ["get"], apiGroups: [""], resources: ["pods/*"] }, request: req("GET", "/api/v1/namespaces/a/pods/p"), allowed: false },
  { what: "pods/* does not grant services/proxy", rule: { verbs: ["get"], apiGroups: [""], resources: ["pods/*"] }, request: req("GET", "/api/v1/namespaces/a/services/s/proxy/"), allowed: false },
  { what: "* grants subresources too", rule: { verbs: ["create"], apiGroups: [""], resources: ["*"] }, request: req("POST", "/api/v1/namespaces/a/pods/p/exec"), allowed: true },
  { what: "pod proxy upgrade needs create", rule: { verbs: ["get"], apiGroups: [""], resources: ["pods/proxy"] }, request: req("GET", "/api/v1/namespaces/a/pods/p/proxy/ws", true), allowed: false },
  { what: "pod proxy plain GET is get", rule: { verbs: ["get"], apiGroups: [""], resources: ["pods/proxy"] }, request: req("GET", "/api/v1/namespaces/a/pods/p/proxy/index.html"), allowed: true },
  // resourceNames
  { what: "resourceNames: the named object", rule: { verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("GET", "/api/v1/namespaces/a/configmaps/app"), allowed: true },
  { what: "resourceNames: another object", rule: { verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("GET", "/api/v1/namespaces/a/configmaps/other"), allowed: false },
  { what: "resourceNames: plain list is refused", rule: { verbs: ["list"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("GET", "/api/v1/namespaces/a/configmaps"), allowed: false },
  { what: "resourceNames: list narrowed by fieldSelector is allowed", rule: { verbs: ["list"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("GET", "/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name%3Dapp"), allowed: true },
  { what: "resourceNames: watch narrowed to another name", rule: { verbs: ["watch"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("GET", "/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name%3Dother&watch=true"), allowed: false },
  { what: "resourceNames: create without a name is refused", rule: { verbs: ["create"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("POST", "/api/v1/namespaces/a/configmaps"), allowed: false },
  { what: "resourceNames: deletecollection is refused", rule: { verbs: ["deletecollection"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["app"] }, request: req("DELETE", "/api/v1/namespaces/a/configmaps"), allowed: false },
  { what: "resourceNames: exec into the named pod", rule: { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"], resourceNames: ["web-0"] }, request: req("GET", "/api/v1/namespaces/a/pods/web-0/exec?command=sh"), allowed: true },
  { what: "resourceNames: exec into another pod", rule: { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"], resourceNames: ["web-0"] }, request: req("GET", "/api/v1/namespaces/a/pods/web-1/exec?command=sh"), allowed: false },
  // namespaces (kpass extension)
  { what: "namespaces absent: any namespace", rule: podsRead, request: req("GET", "/api/v1/namespaces/zzz/pods"), allowed: true },
  { what: "namespaces absent: all namespaces", rule: podsRead, request: req("GET", "/api/v1/pods"), allowed: true },
  { what: "namespaces absent: cluster-scoped", rule: { verbs: ["get"], apiGroups: [""], resources: ["nodes"] }, request: req("GET", "/api/v1/nodes/n1"), allowed: true },
  { what: 'namespaces ["*"]: all namespaces', rule: { ...podsRead, namespaces: ["*"] }, request: req("GET", "/api/v1/pods?watch=1"), allowed: true },
  { what: 'namespaces ["*"]: cluster-scoped', rule: { verbs: ["get"], apiGroups: [""], resources: ["nodes"], namespaces: ["*"] }, request: req("GET", "/api/v1/nodes/n1"), allowed: true },
  { what: "namespaces listed: that namespace", rule: { ...podsRead, namespaces: ["team-a", "team-b"] }, request: req("GET", "/api/v1/namespaces/team-b/pods"), allowed: true },
  { what: "namespaces listed: another namespace", rule: { ...podsRead, namespaces: ["team-a"] }, request: req("GET", "/api/v1/namespaces/team-c/pods"), allowed: false },
  { what: "namespaces listed: all-namespaces list is refused", rule: { ...podsRead, namespaces: ["team-a"] }, request: req("GET", "/api/v1/pods?limit=500"), allowed: false },
  { what: "namespaces listed: all-namespaces watch is refused", rule: { ...podsRead, namespaces: ["team-a"] }, request: req("GET", "/api/v1/watch/pods"), allowed: false },
  { what: "namespaces listed: cluster-scoped is refused", rule: { verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["team-a"] }, request: req("GET", "/api/v1/nodes/n1"), allowed: false },
  { what: "namespaces listed: get own namespace object", rule: { verbs: ["get"], apiGroups: [""], resources: ["namespaces"], namespaces: ["team-a"] }, request: req("GET", "/api/v1/namespaces/team-a"), allowed: true },
  { what: "namespaces listed: list namespaces is refused", rule: { verbs: ["list"], apiGroups: [""], resources: ["namespaces"], namespaces: ["team-a"] }, request: req("GET", "/api/v1/namespaces"), allowed: false },
  { what: "namespaces listed: delete another namespace", rule: { verbs: ["delete"], apiGroups: [""], resources: ["namespaces"], namespaces: ["team-a"] }, request: req("DELETE", "/api/v1/namespaces/team-b"), allowed: false },
  { what: "namespaces listed: non-resource request is refused", rule: { verbs: ["get"], nonResourceURLs: ["*"], namespaces: ["team-a"] }, request: req("GET", "/healthz"), allowed: false },
  { what: "namespaces empty list: nothing", rule: { ...podsRead, namespaces: [] }, request: req("GET", "/api/v1/namespaces/team-a/pods"), allowed: false },
  // impersonation (attributes built by the caller)
  { what: "impersonate a listed user", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["users"], resourceNames: ["bob"] }, request: impersonate("users", "bob"), allowed: true },
  { what: "impersonate another user", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["users"], resourceNames: ["bob"] }, request: impersonate("users", "alice"), allowed: false },
  { what: "users rule does not grant groups", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["users"] }, request: impersonate("groups", "system:masters"), allowed: false },
  { what: "impersonate any group", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["groups"] }, request: impersonate("groups", "devs"), allowed: true },
  { what: "get on users is not impersonate", rule: { verbs: ["get"], apiGroups: [""], resources: ["users"] }, request: impersonate("users", "bob"), allowed: false },
  { what: "impersonate a service account in its namespace", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["serviceaccounts"], namespaces: ["team-a"] }, request: impersonate("serviceaccounts", "builder", "team-a"), allowed: true },
  { what: "impersonate a service account elsewhere", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["serviceaccounts"], namespaces: ["team-a"] }, request: impersonate("serviceaccounts", "builder", "kube-system"), allowed: false },
  { what: "namespace-limited rule cannot impersonate users", rule: { verbs: ["impersonate"], apiGroups: [""], resources: ["users"], namespaces: ["team-a"] }, request: impersonate("users", "bob"), allowed: false },
  // nonResourceURLs
  { what: "exact non-resource URL", rule: { verbs: ["get"], nonResourceURLs: ["/healthz"] }, request: req("GET", "/healthz"), allowed: true },
  { what: "exact URL does not match a longer path", rule: { verbs: ["get"], nonResourceURLs: ["/healthz"] }, request: req("GET", "/healthz/etcd"), allowed: false },
  { what: "prefix wildcard", rule: { verbs: ["get"], nonResourceURLs: ["/logs/*"] }, request: req("GET", "/logs/kube-apiserver.log"), allowed: true },
  { what: "prefix wildcard does not match the bare directory", rule: { verbs: ["get"], nonResourceURLs: ["/logs/*"] }, request: req("GET", "/logs"), allowed: false },
  { what: "prefix wildcard respects the verb", rule: { verbs: ["get"], nonResourceURLs: ["/logs/*"] }, request: req("POST", "/logs/x"), allowed: false },
  { what: "* matches every non-resource URL", rule: { verbs: ["*"], nonResourceURLs: ["*"] }, request: req("GET", "/metrics"), allowed: true },
  { what: "nonResourceURLs do not grant resources", rule: { verbs: ["*"], nonResourceURLs: ["*"] }, request: req("GET", "/api/v1/namespaces/a/pods"), allowed: false },
  { what: "resource rules do not grant non-resource URLs", rule: { verbs: ["*"], apiGroups: ["*"], resources: ["*"] }, request: req("GET", "/healthz"), allowed: false },
  { what: "non-resource paths match on the decoded path", rule: { verbs: ["get"], nonResourceURLs: ["/logs/a b"] }, request: req("GET", "/logs/a%20b"), allowed: true },
];

describe("ruleAllows", () => {
  for (const c of cases) {
    test(`${c.allowed ? "allows" : "denies"}: ${c.what}`, () => {
      expect(ruleAllows(c.rule, c.request)).toBe(c.allowed);
    });
  }
});

describe("rulesAllow", () => {
  const rules: PolicyRule[] = [
    { verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["pods", "pods/log"], namespaces: ["team-a"] },
    { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"], namespaces: ["team-a"], resourceNames: ["debug"] },
    { verbs: ["get"], nonResourceURLs: ["/healthz"] },
  ];
  test("no rules allow nothing", () => expect(rulesAllow([], req("GET", "/api/v1/namespaces/team-a/pods"))).toBe(false));
  test("any matching rule allows", () => {
    expect(rulesAllow(rules, req("GET", "/api/v1/namespaces/team-a/pods/web-0/log?follow=true"))).toBe(true);
    expect(rulesAllow(rules, req("POST", "/api/v1/namespaces/team-a/pods/debug/exec?command=sh"))).toBe(true);
    expect(rulesAllow(rules, req("GET", "/healthz"))).toBe(true);
  });
  test("no matching rule denies", () => {
    expect(rulesAllow(rules, req("POST", "/api/v1/namespaces/team-a/pods/web-0/exec?command=sh"))).toBe(false);
    expect(rulesAllow(rules, req("GET", "/api/v1/namespaces/team-b/pods"))).toBe(false);
    expect(rulesAllow(rules, req("GET", "/api/v1/pods"))).toBe(false);
    expect(rulesAllow(rules, req("GET", "/api/v1/namespaces/team-a/secrets"))).toBe(false);
    expect(rulesAllow(rules, req("GET", "/metrics"))).toBe(false);
  });
});

describe("validateRules", () => {
  test("accepts valid rules and returns copies without unset fields", () => {
    const input = [
      { verbs: ["get", "list"], apiGroups: ["", "apps"], resources: ["pods", "pods/log", "*/status", "deployments/*"], namespaces: ["team-a"] },
      { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"], resourceNames: ["web-0"] },
      { verbs: ["impersonate"], apiGroups: [""], resources: ["users", "groups"] },
      { verbs: ["get"], nonResourceURLs: ["/healthz", "/logs/*", "*"] },
      { verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"] },
    ];
    const result = validateRules(input);
    expect(result).toEqual({ rules: input });
    if (!("rules" in result)) throw new Error("expected rules");
    expect(result.rules[0]).not.toBe(input[0]);
    expect(result.rules[0]?.verbs).not.toBe(input[0]?.verbs);
    expect(Object.keys(result.rules[1] ?? {})).toEqual(["verbs", "apiGroups", "resources", "resourceNames"]);
  });

  test("an empty list is valid and grants nothing", () => {
    expect(validateRules([])).toEqual({ rules: [] });
  });

  test("a custom field path prefix", () => {
    expect(validateRules({}, "spec.extraRules")).toEqual({ errors: [{ field: "spec.extraRules", message: "must be a list of rules" }] });
  });

  const invalid: { what: string; rules: unknown; fields: string[] }[] = [
    { what: "not a list", rules: { verbs: ["get"] }, fields: ["spec.rules"] },
    { what: "null", rules: null, fields: ["spec.rules"] },
    { what: "rule is not an object", rules: ["get pods"], fields: ["spec.rules[0]"] },
    { what: "missing verbs", rules: [{ apiGroups: [""], resources: ["pods"] }], fields: ["spec.rules[0].verbs"] },
    { what: "empty verbs", rules: [{ verbs: [], apiGroups: [""], resources: ["pods"] }], fields: ["spec.rules[0].verbs"] },
    { what: "verbs not a list", rules: [{ verbs: "get", apiGroups: [""], resources: ["pods"] }], fields: ["spec.rules[0].verbs"] },
    { what: "upper-case verb", rules: [{ verbs: ["GET"], apiGroups: [""], resources: ["pods"] }], fields: ["spec.rules[0].verbs[0]"] },
    { what: "verb not a string", rules: [{ verbs: ["get", 3], apiGroups: [""], resources: ["pods"] }], fields: ["spec.rules[0].verbs[1]"] },
    { what: "missing apiGroups", rules: [{ verbs: ["get"], resources: ["pods"] }], fields: ["spec.rules[0].apiGroups"] },
    { what: "missing resources", rules: [{ verbs: ["get"], apiGroups: [""] }], fields: ["spec.rules[0].resources"] },
    { what: "group with version", rules: [{ verbs: ["get"], apiGroups: ["apps/v1"], resources: ["deployments"] }], fields: ["spec.rules[0].apiGroups[0]"] },
    { what: '"core" instead of ""', rules: [{ verbs: ["get"], apiGroups: ["core"], resources: ["pods"] }], fields: ["spec.rules[0].apiGroups[0]"] },
    { what: "kubectl-style resource.group", rules: [{ verbs: ["get"], apiGroups: ["apps"], resources: ["deployments.apps"] }], fields: ["spec.rules[0].resources[0]"] },
    { what: "upper-case resource", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["Pods"] }], fields: ["spec.rules[0].resources[0]"] },
    { what: "resource with two slashes", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods/exec/x"] }], fields: ["spec.rules[0].resources[0]"] },
    { what: "empty resource", rules: [{ verbs: ["get"], apiGroups: [""], resources: [""] }], fields: ["spec.rules[0].resources[0]"] },
    { what: "wildcard resourceName", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], resourceNames: ["*"] }], fields: ["spec.rules[0].resourceNames[0]"] },
    { what: "empty namespaces list", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], namespaces: [] }], fields: ["spec.rules[0].namespaces"] },
    { what: "namespaces null", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], namespaces: null }], fields: ["spec.rules[0].namespaces"] },
    { what: "namespaces a string", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], namespaces: "team-a" }], fields: ["spec.rules[0].namespaces"] },
    { what: "invalid namespace name", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], namespaces: ["Team_A"] }], fields: ["spec.rules[0].namespaces[0]"] },
    { what: "nonResourceURL without slash", rules: [{ verbs: ["get"], nonResourceURLs: ["healthz"] }], fields: ["spec.rules[0].nonResourceURLs[0]"] },
    { what: "nonResourceURL with a star in the middle", rules: [{ verbs: ["get"], nonResourceURLs: ["/logs/*/x"] }], fields: ["spec.rules[0].nonResourceURLs[0]"] },
    { what: "nonResourceURLs mixed with resources", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], nonResourceURLs: ["/healthz"] }], fields: ["spec.rules[0].apiGroups", "spec.rules[0].resources"] },
    { what: "nonResourceURLs with namespaces", rules: [{ verbs: ["get"], nonResourceURLs: ["/healthz"], namespaces: ["team-a"] }], fields: ["spec.rules[0].namespaces"] },
    { what: "unknown field (singular typo)", rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], namespace: ["team-a"] }], fields: ["spec.rules[0].namespace"] },
  ];
  for (const c of invalid) {
    test(`rejects ${c.what}`, () => {
      const result = validateRules(c.rules);
      if (!("errors" in result)) throw new Error(`expected errors, got ${JSON.stringify(result)}`);
      expect(result.errors.map((e) => e.field)).toEqual(c.fields);
      for (const e of result.errors) expect(e.message.length).toBeGreaterThan(0);
    });
  }

  test("reports every bad rule with its index", () => {
    const result = validateRules([
      { verbs: ["get"], apiGroups: [""], resources: ["pods"] },
      { verbs: [], apiGroups: [""], resources: ["pods"] },
      { verbs: ["get"], apiGroups: ["apps/v1"], resources: ["deployments"] },
    ]);
    if (!("errors" in result)) throw new Error("expected errors");
    expect(result.errors.map((e) => e.field)).toEqual(["spec.rules[1].verbs", "spec.rules[2].apiGroups[0]"]);
  });

  test("messages give the fix for common mistakes", () => {
    const core = validateRules([{ verbs: ["get"], apiGroups: ["core"], resources: ["pods"] }]);
    expect(core).toEqual({ errors: [{ field: "spec.rules[0].apiGroups[0]", message: 'the core API group is "" (the empty string)' }] });
    const typo = validateRules([{ verbs: ["get"], apiGroups: [""], resources: ["pods"], namespace: ["a"] }]);
    expect(typo).toEqual({ errors: [{ field: "spec.rules[0].namespace", message: 'unknown field; did you mean "namespaces"?' }] });
  });

  test("validated rules behave as written", () => {
    const result = validateRules([{ verbs: ["create"], apiGroups: [""], resources: ["pods/exec"], namespaces: ["team-a"] }]);
    if (!("rules" in result)) throw new Error("expected rules");
    expect(rulesAllow(result.rules, req("GET", "/api/v1/namespaces/team-a/pods/p/exec?command=sh"))).toBe(true);
    expect(rulesAllow(result.rules, req("GET", "/api/v1/namespaces/team-b/pods/p/exec?command=sh"))).toBe(false);
  });
});

describe("built-in roles", () => {
  function role(name: string): PolicyRule[] {
    const rules = roleRules(name);
    if (!rules) throw new Error(`no role ${name}`);
    return rules;
  }

  test("names", () => {
    expect([...builtInRoleNames]).toEqual(["view", "edit", "admin", "cluster-admin"]);
    expect(roleRules("nope")).toBeUndefined();
    expect(roleRules("constructor")).toBeUndefined();
    expect(roleRules("__proto__")).toBeUndefined();
  });

  test("every built-in role passes validateRules", () => {
    for (const name of builtInRoleNames) expect(validateRules(role(name))).toEqual({ rules: role(name) });
  });

  test("roleRules returns a fresh copy each time", () => {
    const first = role("view");
    first[0]?.verbs.push("delete");
    first.push({ verbs: ["*"], apiGroups: ["*"], resources: ["*"] });
    expect(rulesAllow(role("view"), req("DELETE", "/api/v1/namespaces/a/pods/p"))).toBe(false);
    expect(rulesAllow(role("view"), req("GET", "/api/v1/namespaces/a/secrets"))).toBe(false);
  });

  const matrix: { what: string; request: RequestAttributes; view: boolean; edit: boolean; admin: boolean }[] = [
    { what: "get pods", request: req("GET", "/api/v1/namespaces/a/pods/p"), view: true, edit: true, admin: true },
    { what: "watch pods", request: req("GET", "/api/v1/namespaces/a/pods?watch=true"), view: true, edit: true, admin: true },
    { what: "logs -f", request: req("GET", "/api/v1/namespaces/a/pods/p/log?follow=true"), view: true, edit: true, admin: true },
    { what: "pods/status", request: req("GET", "/api/v1/namespaces/a/pods/p/status"), view: true, edit: true, admin: true },
    { what: "list deployments", request: req("GET", "/apis/apps/v1/namespaces/a/deployments"), view: true, edit: true, admin: true },
    { what: "list jobs", request: req("GET", "/apis/batch/v1/namespaces/a/jobs"), view: true, edit: true, admin: true },
    { what: "list ingresses", request: req("GET", "/apis/networking.k8s.io/v1/namespaces/a/ingresses"), view: true, edit: true, admin: true },
    { what: "list pdbs", request: req("GET", "/apis/policy/v1/namespaces/a/poddisruptionbudgets"), view: true, edit: true, admin: true },
    { what: "list hpas", request: req("GET", "/apis/autoscaling/v2/namespaces/a/horizontalpodautoscalers"), view: true, edit: true, admin: true },
    { what: "list events", request: req("GET", "/api/v1/namespaces/a/events"), view: true, edit: true, admin: true },
    { what: "get own namespace", request: req("GET", "/api/v1/namespaces/a"), view: true, edit: true, admin: true },
    { what: "top pods", request: req("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods"), view: true, edit: true, admin: true },
    { what: "get secrets", request: req("GET", "/api/v1/namespaces/a/secrets/s"), view: false, edit: true, admin: true },
    { what: "list secrets", request: req("GET", "/api/v1/namespaces/a/secrets"), view: false, edit: true, admin: true },
    { what: "exec (SPDY)", request: req("POST", "/api/v1/namespaces/a/pods/p/exec?command=sh"), view: false, edit: true, admin: true },
    { what: "exec (WebSocket)", request: req("GET", "/api/v1/namespaces/a/pods/p/exec?command=sh"), view: false, edit: true, admin: true },
    { what: "attach", request: req("POST", "/api/v1/namespaces/a/pods/p/attach"), view: false, edit: true, admin: true },
    { what: "port-forward", request: req("POST", "/api/v1/namespaces/a/pods/p/portforward"), view: false, edit: true, admin: true },
    { what: "service proxy", request: req("GET", "/api/v1/namespaces/a/services/s/proxy/"), view: false, edit: true, admin: true },
    { what: "delete pod", request: req("DELETE", "/api/v1/namespaces/a/pods/p"), view: false, edit: true, admin: true },
    { what: "evict pod", request: req("POST", "/api/v1/namespaces/a/pods/p/eviction"), view: false, edit: true, admin: true },
    { what: "apply deployment", request: req("PATCH", "/apis/apps/v1/namespaces/a/deployments/d"), view: false, edit: true, admin: true },
    { what: "scale deployment", request: req("PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale"), view: false, edit: true, admin: true },
    { what: "create configmap", request: req("POST", "/api/v1/namespaces/a/configmaps"), view: false, edit: true, admin: true },
    { what: "deletecollection configmaps", request: req("DELETE", "/api/v1/namespaces/a/configmaps?labelSelector=x"), view: false, edit: true, admin: true },
    { what: "impersonate a service account", request: impersonate("serviceaccounts", "builder", "a"), view: false, edit: true, admin: true },
    { what: "write endpoints (removed from edit upstream)", request: req("POST", "/api/v1/namespaces/a/endpoints"), view: false, edit: false, admin: false },
    { what: "write pods/status", request: req("PUT", "/api/v1/namespaces/a/pods/p/status"), view: false, edit: false, admin: false },
    { what: "write resourcequotas", request: req("PUT", "/api/v1/namespaces/a/resourcequotas/q"), view: false, edit: false, admin: false },
    { what: "create rolebindings", request: req("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings"), view: false, edit: false, admin: true },
    { what: "list roles", request: req("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles"), view: false, edit: false, admin: true },
    { what: "clusterroles", request: req("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles"), view: false, edit: false, admin: false },
    { what: "delete namespace", request: req("DELETE", "/api/v1/namespaces/a"), view: false, edit: false, admin: false },
    { what: "get nodes", request: req("GET", "/api/v1/nodes/n1"), view: false, edit: false, admin: false },
    { what: "node proxy", request: req("GET", "/api/v1/nodes/n1/proxy/stats/summary"), view: false, edit: false, admin: false },
    { what: "impersonate a user", request: impersonate("users", "bob"), view: false, edit: false, admin: false },
    { what: "crds", request: req("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"), view: false, edit: false, admin: false },
    { what: "/metrics", request: req("GET", "/metrics"), view: false, edit: false, admin: false },
  ];
  for (const row of matrix) {
    test(`${row.what}: view ${row.view ? "allows" : "denies"}, edit ${row.edit ? "allows" : "denies"}, admin ${row.admin ? "allows" : "denies"}`, () => {
      expect(rulesAllow(role("view"), row.request)).toBe(row.view);
      expect(rulesAllow(role("edit"), row.request)).toBe(row.edit);
      expect(rulesAllow(role("admin"), row.request)).toBe(row.admin);
      expect(rulesAllow(role("cluster-admin"), row.request)).toBe(true);
    });
  }

  test("cluster-admin allows everything, incl. non-resource URLs and impersonation", () => {
    const admin = role("cluster-admin");
    for (const request of [
      req("DELETE", "/api/v1/namespaces/kube-system"),
      req("GET", "/api/v1/pods?watch=true"),
      req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
      req("GET", "/api/v1/nodes/n1/proxy/logs/", true),
      req("GET", "/logs/kube-apiserver.log"),
      req("POST", "/some/custom/path"),
      impersonate("groups", "system:masters"),
    ]) {
      expect(rulesAllow(admin, request)).toBe(true);
    }
  });

  test("a role narrowed to namespaces by the caller stays inside them", () => {
    const edit = role("edit").map((r) => ({ ...r, namespaces: ["team-a"] }));
    expect(rulesAllow(edit, req("POST", "/api/v1/namespaces/team-a/pods/p/exec?command=sh"))).toBe(true);
    expect(rulesAllow(edit, req("POST", "/api/v1/namespaces/team-b/pods/p/exec?command=sh"))).toBe(false);
    expect(rulesAllow(edit, req("GET", "/api/v1/pods"))).toBe(false);
    expect(rulesAllow(edit, req("GET", "/api/v1/namespaces"))).toBe(false);
  });
});
