/**
 * The pass's half of `kubectl auth can-i [--list]` through a cluster: which requests are self
 * reviews, how an access review's spec reads as a request, and how a cluster's rules are narrowed
 * to the pass's (an intersection of RBAC rules, wildcards included).
 */
import { describe, expect, test } from "bun:test";
import type { Identity } from "../../src/auth/identity.ts";
import { readReviewSpec } from "../../src/auth/review-body.ts";
import { meetResource, meetURL, narrowRules, passAllows, reviewedAttributes, selfReviewKind } from "../../src/auth/self-review.ts";
import type { PolicyRule } from "../../src/core/pass.ts";

function identity(rules: PolicyRule[]): Identity {
  return { pass: "alice", passUid: "u", user: "alice", groups: [], isAdmin: false, rules, reachesCluster: () => true };
}

const create = (apiGroup: string, resource: string) => ({ isResourceRequest: true, verb: "create", apiGroup, apiVersion: "v1", resource, subresource: "", namespace: "", name: "", path: "" });

describe("which requests are self reviews", () => {
  test("the three self-review creates, and nothing that only looks like one", () => {
    expect(selfReviewKind(create("authentication.k8s.io", "selfsubjectreviews"))).toBe("whoami");
    expect(selfReviewKind(create("authorization.k8s.io", "selfsubjectaccessreviews"))).toBe("access");
    expect(selfReviewKind(create("authorization.k8s.io", "selfsubjectrulesreviews"))).toBe("rules");
    // A SubjectAccessReview asks about someone else: it is not a self review.
    expect(selfReviewKind(create("authorization.k8s.io", "subjectaccessreviews"))).toBeUndefined();
    expect(selfReviewKind({ ...create("authorization.k8s.io", "selfsubjectaccessreviews"), verb: "delete" })).toBeUndefined();
    expect(selfReviewKind({ ...create("authorization.k8s.io", "selfsubjectaccessreviews"), namespace: "x" })).toBeUndefined();
    expect(selfReviewKind(create("example.com", "selfsubjectaccessreviews"))).toBeUndefined();
  });

  test("a pass with no rules may still review itself and read discovery, and nothing else", () => {
    const nobody = identity([]);
    expect(passAllows(nobody, create("authorization.k8s.io", "selfsubjectrulesreviews"))).toBe(true);
    expect(passAllows(nobody, { ...create("", ""), isResourceRequest: false, verb: "get", path: "/apis" })).toBe(true);
    expect(passAllows(nobody, { ...create("", "pods"), verb: "list", namespace: "a" })).toBe(false);
    expect(passAllows(nobody, { ...create("", ""), isResourceRequest: false, verb: "get", path: "/metrics" })).toBe(false);
  });
});

describe("access review specs", () => {
  test("resource and non-resource attributes read as a request", () => {
    expect(reviewedAttributes({ resourceAttributes: { verb: "delete", resource: "pods", namespace: "a", name: "p", subresource: "" } })).toMatchObject({ isResourceRequest: true, verb: "delete", resource: "pods", namespace: "a", name: "p", apiGroup: "" });
    expect(reviewedAttributes({ nonResourceAttributes: { verb: "get", path: "/healthz" } })).toMatchObject({ isResourceRequest: false, verb: "get", path: "/healthz" });
    expect(reviewedAttributes({})).toBeUndefined();
  });

  test("kubectl 1.33's protobuf body reads the same as the JSON one", () => {
    // "k8s\0" + Unknown{ raw: SelfSubjectAccessReview{ spec{ resourceAttributes{ namespace "team-a", verb "get", resource "pods", subresource "log" } } } }
    const str = (field: number, value: string) => [field * 8 + 2, value.length, ...Buffer.from(value)];
    const msg = (field: number, body: number[]) => [field * 8 + 2, body.length, ...body];
    const attributes = [...str(1, "team-a"), ...str(2, "get"), ...str(5, "pods"), ...str(6, "log")];
    const raw = msg(2, msg(1, attributes));
    const envelope = new Uint8Array([0x6b, 0x38, 0x73, 0x00, ...msg(2, raw)]);
    const spec = readReviewSpec("access", "application/vnd.kubernetes.protobuf", envelope);
    expect(spec.resourceAttributes).toMatchObject({ namespace: "team-a", verb: "get", resource: "pods", subresource: "log", group: "", name: "" });
    const json = readReviewSpec("access", "application/json", Buffer.from(JSON.stringify({ spec: { resourceAttributes: { namespace: "team-a", verb: "get", resource: "pods", subresource: "log" } } })));
    expect(reviewedAttributes(json)).toEqual(reviewedAttributes(spec)!);
    const rules = readReviewSpec("rules", "application/vnd.kubernetes.protobuf", new Uint8Array([0x6b, 0x38, 0x73, 0x00, ...msg(2, msg(2, str(1, "team-a")))]));
    expect(rules.namespace).toBe("team-a");
  });

  test("bodies kpass cannot read are refused, never guessed", () => {
    expect(() => readReviewSpec("access", "application/vnd.kubernetes.protobuf", new Uint8Array([1, 2, 3, 4]))).toThrow("envelope");
    expect(() => readReviewSpec("access", "application/vnd.kubernetes.protobuf", new Uint8Array([0x6b, 0x38, 0x73, 0x00, 0x12, 0x7f]))).toThrow("truncated");
    expect(() => readReviewSpec("access", "text/plain", new Uint8Array())).toThrow("application/json");
    expect(() => readReviewSpec("access", "application/json", Buffer.from("{"))).toThrow("not valid JSON");
  });
});

describe("rule intersections", () => {
  test("resources, with RBAC's wildcards and kpass's pods/*", () => {
    expect(meetResource("*", "pods")).toBe("pods");
    expect(meetResource("pods", "pods")).toBe("pods");
    expect(meetResource("pods", "services")).toBeUndefined();
    expect(meetResource("pods", "pods/log")).toBeUndefined();
    expect(meetResource("pods/*", "pods/log")).toBe("pods/log");
    expect(meetResource("*/scale", "deployments/*")).toBe("deployments/scale");
    expect(meetResource("*/scale", "pods")).toBeUndefined();
  });

  test("non-resource URLs, exact and by prefix", () => {
    expect(meetURL("*", "/healthz")).toBe("/healthz");
    expect(meetURL("/apis/*", "/apis/apps")).toBe("/apis/apps");
    expect(meetURL("/apis/*", "/apis/apps/*")).toBe("/apis/apps/*");
    expect(meetURL("/api/*", "/apis/*")).toBeUndefined();
    expect(meetURL("/healthz", "/livez")).toBeUndefined();
  });

  test("a cluster's rules narrowed to a pass that may only read pods and logs in team-a", () => {
    const pass = identity([{ verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["pods", "pods/log"], namespaces: ["team-a"] }]);
    const cluster = {
      resourceRules: [
        { verbs: ["*"], apiGroups: ["*"], resources: ["*"] },
        { verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["cm"] },
      ],
      nonResourceRules: [{ verbs: ["*"], nonResourceURLs: ["*"] }],
      incomplete: false,
    };
    const narrowed = narrowRules(cluster, pass, "team-a");
    expect(narrowed.resourceRules).toContainEqual({ verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["pods", "pods/log"] });
    // Nothing the pass does not allow survives, however broad the cluster's rule.
    expect(narrowed.resourceRules.some((r) => r.resources?.includes("configmaps"))).toBe(false);
    expect(narrowed.resourceRules.some((r) => r.verbs.includes("delete") || r.verbs.includes("*"))).toBe(false);
    // Everyone's self reviews and discovery stay.
    expect(narrowed.resourceRules).toContainEqual({ verbs: ["create"], apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"] });
    expect(narrowed.nonResourceRules.some((r) => r.nonResourceURLs?.includes("/apis/*"))).toBe(true);
    expect(narrowed.nonResourceRules.some((r) => r.nonResourceURLs?.includes("/metrics") || r.nonResourceURLs?.includes("*"))).toBe(false);
    expect(narrowed.incomplete).toBe(false);
    // In another namespace the pass's namespaced rule does not apply at all.
    expect(narrowRules(cluster, pass, "team-b").resourceRules.some((r) => r.resources?.includes("pods"))).toBe(false);
  });

  test("resourceNames narrow each other; a cluster's incompleteness is kept", () => {
    const pass = identity([{ verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["a", "b"] }]);
    const cluster = { resourceRules: [{ verbs: ["get", "list"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["b", "c"] }], nonResourceRules: [], incomplete: true };
    const narrowed = narrowRules(cluster, pass, "x");
    expect(narrowed.resourceRules).toEqual([{ verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["b"] }]);
    expect(narrowed.incomplete).toBe(true);
    const disjoint = { ...cluster, resourceRules: [{ verbs: ["get"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["c"] }] };
    expect(narrowRules(disjoint, pass, "x").resourceRules).toEqual([]);
  });
});
