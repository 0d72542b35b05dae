/**
 * The three self-review APIs every authenticated Kubernetes user may call (system:basic-user):
 * who am I (SelfSubjectReview), may I (SelfSubjectAccessReview), what may I (SelfSubjectRulesReview).
 * Through kpass a request succeeds only when both the pass and the cluster allow it, so the answers
 * are the pass's decision combined with the cluster's: an access review is the conjunction, a rules
 * review the cluster's rules narrowed to the pass's.
 */
import type { PolicyRule } from "../core/pass.ts";
import type { Identity } from "./identity.ts";
import { rulesAllow } from "./policy-rules.ts";
import { isDiscoveryPath, type RequestAttributes } from "./request-attributes.ts";

export type SelfReviewKind = "whoami" | "access" | "rules";

const SELF_REVIEWS: Readonly<Record<string, SelfReviewKind>> = {
  "authentication.k8s.io/selfsubjectreviews": "whoami",
  "authorization.k8s.io/selfsubjectaccessreviews": "access",
  "authorization.k8s.io/selfsubjectrulesreviews": "rules",
};

/** Which self review `a` creates, if any. */
export function selfReviewKind(a: RequestAttributes): SelfReviewKind | undefined {
  if (!a.isResourceRequest || a.verb !== "create" || a.name !== "" || a.subresource !== "" || a.namespace !== "") return undefined;
  return SELF_REVIEWS[`${a.apiGroup}/${a.resource}`];
}

export function isSelfReview(a: RequestAttributes): boolean {
  return selfReviewKind(a) !== undefined;
}

/** The rules every pass has besides its own: discovery and the self reviews. */
export const IMPLICIT_RULES: readonly PolicyRule[] = Object.freeze([
  { verbs: ["create"], apiGroups: ["authentication.k8s.io"], resources: ["selfsubjectreviews"] },
  { verbs: ["create"], apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"] },
  { verbs: ["get"], nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/version", "/version/", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*"] },
]);

/** Whether the pass lets `a` through to a cluster it reaches (the same decision authorizeProxy makes). */
export function passAllows(identity: Identity, a: RequestAttributes): boolean {
  if (!a.isResourceRequest && a.verb === "get" && isDiscoveryPath(a.path)) return true;
  return isSelfReview(a) || rulesAllow(identity.rules, a);
}

/** spec.resourceAttributes / spec.nonResourceAttributes of a SubjectAccessReview. */
export interface AccessReviewSpec {
  resourceAttributes?: { namespace?: string; verb?: string; group?: string; version?: string; resource?: string; subresource?: string; name?: string };
  nonResourceAttributes?: { path?: string; verb?: string };
}

/** The request an access review asks about, as authorization reads a request. */
export function reviewedAttributes(spec: AccessReviewSpec): RequestAttributes | undefined {
  const r = spec.resourceAttributes;
  if (r) {
    return { isResourceRequest: true, verb: r.verb ?? "", apiGroup: r.group ?? "", apiVersion: r.version ?? "", resource: r.resource ?? "", subresource: r.subresource ?? "", namespace: r.namespace ?? "", name: r.name ?? "", path: "" };
  }
  const n = spec.nonResourceAttributes;
  if (n) return { isResourceRequest: false, verb: n.verb ?? "", apiGroup: "", apiVersion: "", resource: "", subresource: "", namespace: "", name: "", path: n.path ?? "" };
  return undefined;
}

export interface ResourceRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
}

export interface NonResourceRule {
  verbs: string[];
  nonResourceURLs?: string[];
}

export interface RulesReviewStatus {
  resourceRules: ResourceRule[];
  nonResourceRules: NonResourceRule[];
  incomplete: boolean;
  evaluationError?: string;
}

const ALL = "*";

/** Values both lists allow ("*" allows all); empty when they share none. */
function meetLists(a: readonly string[] | undefined, b: readonly string[] | undefined): string[] {
  const left = a ?? [];
  const right = b ?? [];
  if (left.includes(ALL)) return [...right];
  if (right.includes(ALL)) return [...left];
  return left.filter((v) => right.includes(v));
}

/** resourceNames: absent or empty allows every name. */
function meetNames(a: readonly string[] | undefined, b: readonly string[] | undefined): string[] | undefined | null {
  if (!a || a.length === 0) return b && b.length > 0 ? [...b] : undefined;
  if (!b || b.length === 0) return [...a];
  const both = a.filter((n) => b.includes(n));
  return both.length > 0 ? both : null;
}

/** The resource entry both entries allow (entries as in RBAC: plain, with a subresource, a wildcard on either side, or "*"), if any. */
export function meetResource(x: string, y: string): string | undefined {
  if (x === ALL) return y;
  if (y === ALL) return x;
  const [xr, xs] = x.split("/", 2) as [string, string | undefined];
  const [yr, ys] = y.split("/", 2) as [string, string | undefined];
  const resource = xr === ALL ? yr : yr === ALL || yr === xr ? xr : undefined;
  if (resource === undefined) return undefined;
  if (xs === undefined || ys === undefined) return xs === ys ? resource : undefined;
  const sub = xs === ALL ? ys : ys === ALL || ys === xs ? xs : undefined;
  return sub === undefined ? undefined : `${resource}/${sub}`;
}

/** The URL entry both entries allow ("/x", "/x/*" by prefix, "*"), if any. */
export function meetURL(x: string, y: string): string | undefined {
  if (x === ALL) return y;
  if (y === ALL) return x;
  const prefix = (u: string) => (u.endsWith(ALL) ? u.slice(0, -1) : undefined);
  const px = prefix(x);
  const py = prefix(y);
  if (px === undefined && py === undefined) return x === y ? x : undefined;
  if (px !== undefined && py !== undefined) return px.startsWith(py) ? x : py.startsWith(px) ? y : undefined;
  const [exact, p] = px === undefined ? [x, py!] : [y, px];
  return exact.startsWith(p) ? exact : undefined;
}

function meetEach(a: readonly string[] | undefined, b: readonly string[] | undefined, meet: (x: string, y: string) => string | undefined): string[] {
  const out = new Set<string>();
  for (const x of a ?? []) for (const y of b ?? []) {
    const m = meet(x, y);
    if (m !== undefined) out.add(m);
  }
  return [...out];
}

function meetResourceRule(c: ResourceRule, p: PolicyRule): ResourceRule | undefined {
  const verbs = meetLists(c.verbs, p.verbs);
  const apiGroups = meetLists(c.apiGroups, p.apiGroups);
  const resources = meetEach(c.resources, p.resources, meetResource);
  const names = meetNames(c.resourceNames, p.resourceNames);
  if (verbs.length === 0 || apiGroups.length === 0 || resources.length === 0 || names === null) return undefined;
  return names ? { verbs, apiGroups, resources, resourceNames: names } : { verbs, apiGroups, resources };
}

function meetNonResourceRule(c: NonResourceRule, p: PolicyRule): NonResourceRule | undefined {
  const verbs = meetLists(c.verbs, p.verbs);
  const nonResourceURLs = meetEach(c.nonResourceURLs, p.nonResourceURLs, meetURL);
  return verbs.length === 0 || nonResourceURLs.length === 0 ? undefined : { verbs, nonResourceURLs };
}

/** The pass's rules that apply to a rules review of `namespace` ("" = cluster-wide only). */
function passRulesIn(identity: Identity, namespace: string): PolicyRule[] {
  const applies = (r: PolicyRule) => !r.namespaces || r.namespaces.length === 0 || r.namespaces.includes(ALL) || (namespace !== "" && r.namespaces.includes(namespace));
  return [...identity.rules.filter(applies), ...IMPLICIT_RULES];
}

function unique<T>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = JSON.stringify(item);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The cluster's rules for `namespace` narrowed to what the pass allows there: every pairwise
 * intersection of a cluster rule with a pass rule. Incomplete whenever the cluster's answer was.
 */
export function narrowRules(cluster: RulesReviewStatus, identity: Identity, namespace: string): RulesReviewStatus {
  const pass = passRulesIn(identity, namespace);
  const resourceRules = unique(cluster.resourceRules.flatMap((c) => pass.filter((p) => p.nonResourceURLs === undefined || p.resources !== undefined).map((p) => meetResourceRule(c, p)).filter((r): r is ResourceRule => r !== undefined)));
  const nonResourceRules = unique(cluster.nonResourceRules.flatMap((c) => pass.map((p) => meetNonResourceRule(c, p)).filter((r): r is NonResourceRule => r !== undefined)));
  const narrowed: RulesReviewStatus = { resourceRules, nonResourceRules, incomplete: cluster.incomplete };
  if (cluster.evaluationError) narrowed.evaluationError = cluster.evaluationError;
  return narrowed;
}
