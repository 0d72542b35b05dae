/**
 * RBAC escalation prevention for writes that go through a pass to a cluster that is not
 * impersonating: the cluster sees kpass's own credential, so its RBAC storage checks kpass, not the
 * pass. kpass makes the check kube-apiserver's RBAC storage would make of the pass's user
 * (pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased and
 * validation.ConfirmNoEscalation), with the pass's rules as the permissions that user holds:
 *
 * - a Role or ClusterRole may be written when the pass has `escalate` on it, or when every rule it
 *   grants is covered by the pass's rules in its namespace (cluster-wide for a ClusterRole); a
 *   ClusterRole with an aggregationRule needs full authority (`*` on everything);
 * - a RoleBinding or ClusterRoleBinding may be written when the pass has `bind` on the role it
 *   references, or when that role's rules are covered the same way.
 *
 * kpass cannot read the cluster's objects, so whatever it cannot know is refused (fail closed): a
 * binding to a Role or to a ClusterRole other than the built-in ones kpass knows (cluster-admin,
 * admin, edit, view) needs `bind`, and a patch that leaves the rules (or roleRef) it changes unknown
 * needs `escalate` (or `bind`).
 */
import { badRequest, ApiError } from "../core/status.ts";
import type { Identity } from "./identity.ts";
import { rulesAllow } from "./policy-rules.ts";
import type { RequestAttributes } from "./request-attributes.ts";
import { roleRules } from "./roles.ts";
import type { PolicyRule } from "../core/pass.ts";

/** Whose permissions are checked: the pass's user (for the message) and its rules. */
export type EscalationSubject = Pick<Identity, "user" | "groups" | "rules">;

/** The request's attributes as requestAttributes() reads them. */
export type RbacWriteAttributes = Pick<RequestAttributes, "verb" | "apiGroup" | "resource" | "namespace" | "name">;

export const RBAC_GROUP = "rbac.authorization.k8s.io";
/** The largest RBAC write body kpass buffers to check; a larger one is refused with rbacBodyTooLarge(). */
export const RBAC_BODY_LIMIT = 1024 * 1024;
/** The most (group, resource, verb, name) combinations one write may ask kpass to check. */
export const MAX_RULE_COMBINATIONS = 100_000;

const ROLE_RESOURCES: ReadonlySet<string> = new Set(["roles", "clusterroles"]);
const BINDING_RESOURCES: ReadonlySet<string> = new Set(["rolebindings", "clusterrolebindings"]);
const WRITE_VERBS: ReadonlySet<string> = new Set(["create", "update", "patch"]);

type BodyType = "object" | "json-patch" | "merge-patch" | "strategic-merge-patch" | "apply-patch";

const PATCH_TYPES: Readonly<Record<string, BodyType>> = {
  "application/json-patch+json": "json-patch",
  "application/merge-patch+json": "merge-patch",
  "application/strategic-merge-patch+json": "strategic-merge-patch",
  "application/apply-patch+yaml": "apply-patch",
};

/** The rules of a cluster-admin: what a ClusterRole with an aggregationRule needs. */
const FULL_AUTHORITY: readonly RbacRule[] = [
  { verbs: ["*"], apiGroups: ["*"], resources: ["*"] },
  { verbs: ["*"], nonResourceURLs: ["*"] },
];

/** A PolicyRule as a Role in the cluster states it (Kubernetes semantics, no kpass namespaces). */
interface RbacRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

const RULE_FIELDS = ["verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"] as const;

/** A create/update/patch of a Role, ClusterRole, RoleBinding or ClusterRoleBinding. */
export function isRbacWrite(a: RbacWriteAttributes): boolean {
  return a.apiGroup === RBAC_GROUP && WRITE_VERBS.has(a.verb) && (ROLE_RESOURCES.has(a.resource) || BINDING_RESOURCES.has(a.resource));
}

/** Whether kpass itself must check this write: an RBAC write to a cluster that does not impersonate the pass's user. */
export function rbacWriteNeedsCheck(cluster: { spec: { impersonation?: "none" | "user" } }, a: RbacWriteAttributes): boolean {
  return cluster.spec.impersonation !== "user" && isRbacWrite(a);
}

/**
 * Whether the caller must buffer the body and call checkRbacWriteBody: rbacWriteNeedsCheck, unless
 * the pass has `escalate` on the Role/ClusterRole written (which kube-apiserver decides before it
 * reads the object). Bindings always need the body, since `bind` depends on the roleRef.
 */
export function rbacWriteNeedsBody(cluster: { spec: { impersonation?: "none" | "user" } }, subject: EscalationSubject, a: RbacWriteAttributes): boolean {
  if (!rbacWriteNeedsCheck(cluster, a)) return false;
  return !(ROLE_RESOURCES.has(a.resource) && escalateAllowed(subject, a));
}

export function rbacBodyTooLarge(a: RbacWriteAttributes): ApiError {
  return new ApiError(413, "RequestEntityTooLarge", `${a.resource}.${RBAC_GROUP} writes through kpass are checked for privilege escalation and may be at most ${RBAC_BODY_LIMIT} bytes`);
}

function unsupported(a: RbacWriteAttributes, what: string): ApiError {
  return new ApiError(
    415,
    "UnsupportedMediaType",
    `kpass checks ${a.resource}.${RBAC_GROUP} writes for privilege escalation and reads only JSON bodies (${what}): send application/json, or a JSON merge, strategic merge or apply patch, as kubectl does`,
  );
}

/** The body type of a write, from its Content-Type; an ApiError (415) for what kpass cannot read. */
function bodyType(a: RbacWriteAttributes, contentType: string | null | undefined): BodyType | ApiError {
  const media = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (a.verb === "patch") return PATCH_TYPES[media] ?? unsupported(a, media === "" ? "a patch without Content-Type" : `Content-Type "${media}"`);
  if (media === "" || media === "application/json") return "object";
  return unsupported(a, `Content-Type "${media}"`);
}

/**
 * Decodes a buffered body and checks it (checkRbacWrite). `headers` are the client's request headers:
 * Content-Type decides the body type and a Content-Encoding other than identity is refused.
 */
export function checkRbacWriteBody(subject: EscalationSubject, a: RbacWriteAttributes, body: Uint8Array, headers: Headers): ApiError | undefined {
  if (!isRbacWrite(a)) return undefined;
  if (ROLE_RESOURCES.has(a.resource) && escalateAllowed(subject, a)) return undefined;
  if (body.byteLength > RBAC_BODY_LIMIT) return rbacBodyTooLarge(a);
  const encoding = (headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "") return unsupported(a, `Content-Encoding "${encoding}"`);
  const type = bodyType(a, headers.get("content-type"));
  if (type instanceof ApiError) return type;
  let text: string;
  let parsed: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body);
  } catch {
    return badRequest(`the body of this ${a.resource}.${RBAC_GROUP} write is not UTF-8`);
  }
  try {
    parsed = JSON.parse(text);
  } catch {
    // An apply patch may be YAML; kubectl sends JSON, and kpass does not guess how the cluster reads YAML.
    if (type === "apply-patch") return unsupported(a, "a YAML apply patch");
    return badRequest(`the body of this ${a.resource}.${RBAC_GROUP} write is not JSON`);
  }
  return checkRbacWrite(subject, a, parsed, headers.get("content-type"));
}

/**
 * The RBAC storage's escalation check for one write through a pass, on its decoded JSON body.
 * `contentType` tells a patch's type (required for verb "patch"; for create/update only JSON is
 * accepted). Undefined when the write may go to the cluster; otherwise the error to answer with
 * (403 Forbidden as kube-apiserver words it, 400 for a body kpass cannot read, 415 for a body type
 * it does not read). Not an RBAC write: undefined.
 */
export function checkRbacWrite(subject: EscalationSubject, a: RbacWriteAttributes, body: unknown, contentType?: string | null): ApiError | undefined {
  if (!isRbacWrite(a)) return undefined;
  const isRole = ROLE_RESOURCES.has(a.resource);
  if (isRole && escalateAllowed(subject, a)) return undefined;
  const type = bodyType(a, contentType ?? (a.verb === "patch" ? null : "application/json"));
  if (type instanceof ApiError) return type;
  try {
    if (type === "json-patch") return isRole ? checkRole(subject, a, {}, type) : checkBinding(subject, a, {}, type);
    if (!isObject(body)) throw badRequest(`the body of this ${a.resource}.${RBAC_GROUP} write must be a JSON object`);
    if (type === "strategic-merge-patch") refuseDirectives(a, body, "");
    checkSpelling(a, body, ["apiVersion", "kind", "metadata", "rules", "aggregationRule", "roleRef", "subjects"], "");
    return isRole ? checkRole(subject, a, body, type) : checkBinding(subject, a, body, type);
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
}

function escalateAllowed(subject: EscalationSubject, a: RbacWriteAttributes): boolean {
  return rulesAllow(subject.rules, { isResourceRequest: true, verb: "escalate", apiGroup: a.apiGroup, apiVersion: "*", resource: a.resource, subresource: "", namespace: a.namespace, name: a.name, path: "" });
}

function bindAllowed(subject: EscalationSubject, ref: RoleRef, namespace: string): boolean {
  const resource = ref.kind === "ClusterRole" ? "clusterroles" : ref.kind === "Role" ? "roles" : undefined;
  if (!resource) return false;
  return rulesAllow(subject.rules, { isResourceRequest: true, verb: "bind", apiGroup: ref.apiGroup, apiVersion: "", resource, subresource: "", namespace, name: ref.name, path: "" });
}

// ---------------------------------------------------------------------------------------------
// Reading the body

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Strategic-merge directives ($patch, $retainKeys, $setElementOrder/…) change what the patch means; kpass does not emulate them. */
function refuseDirectives(a: RbacWriteAttributes, value: unknown, at: string): void {
  if (Array.isArray(value)) {
    value.forEach((item, i) => refuseDirectives(a, item, `${at}[${i}]`));
    return;
  }
  if (!isObject(value)) return;
  for (const [key, item] of Object.entries(value)) {
    if (key.startsWith("$")) throw forbiddenWrite(a, nameOf(a, undefined), `kpass does not check strategic-merge-patch directives (${at ? at + "." : ""}${key}); send the complete rules or roleRef instead`);
    refuseDirectives(a, item, at ? `${at}.${key}` : key);
  }
}

/**
 * A key that differs from a field only in case would be read as that field by a case-insensitive
 * decoder (older kube-apiservers) and ignored by kpass: refused rather than guessed at.
 */
function checkSpelling(a: RbacWriteAttributes, object: Record<string, unknown>, fields: readonly string[], at: string): void {
  for (const key of Object.keys(object)) {
    if (fields.includes(key)) continue;
    const meant = fields.find((f) => f.toLowerCase() === key.toLowerCase());
    if (meant) throw badRequest(`${a.resource}.${RBAC_GROUP}: field "${at}${key}" must be spelled "${at}${meant}"`);
  }
}

function nameOf(a: RbacWriteAttributes, body: Record<string, unknown> | undefined): string {
  const metadata = body?.metadata;
  const name = isObject(metadata) ? metadata.name : undefined;
  if (a.verb === "create" && typeof name === "string") return name;
  return a.name || (typeof name === "string" ? name : "");
}

function stringList(value: unknown, at: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw badRequest(`${at} must be a list of strings`);
  return value as string[];
}

/** `rules` of a Role or ClusterRole as the cluster will decode them; null or absent is none. */
function readRules(value: unknown, a: RbacWriteAttributes): RbacRule[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw badRequest(`${a.resource}.${RBAC_GROUP}: rules must be a list`);
  return value.map((item: unknown, i) => {
    const at = `rules[${i}]`;
    if (!isObject(item)) throw badRequest(`${a.resource}.${RBAC_GROUP}: ${at} must be an object`);
    checkSpelling(a, item, RULE_FIELDS, `${at}.`);
    const rule: RbacRule = { verbs: stringList(item.verbs, `${at}.verbs`) ?? [] };
    for (const field of RULE_FIELDS) {
      if (field === "verbs") continue;
      const list = stringList(item[field], `${at}.${field}`);
      if (list) rule[field] = list;
    }
    return rule;
  });
}

interface RoleRef {
  apiGroup: string;
  kind: string;
  name: string;
}

/** roleRef as the cluster reads it (an empty apiGroup defaults to rbac.authorization.k8s.io); undefined when incomplete. */
function readRoleRef(value: unknown, a: RbacWriteAttributes): RoleRef | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw badRequest(`${a.resource}.${RBAC_GROUP}: roleRef must be an object`);
  checkSpelling(a, value, ["apiGroup", "kind", "name"], "roleRef.");
  const { apiGroup, kind, name } = value;
  if ((apiGroup !== undefined && apiGroup !== null && typeof apiGroup !== "string") || typeof kind !== "string" || typeof name !== "string" || name === "") return undefined;
  return { apiGroup: typeof apiGroup === "string" && apiGroup !== "" ? apiGroup : RBAC_GROUP, kind, name };
}

// ---------------------------------------------------------------------------------------------
// The checks

function checkRole(subject: EscalationSubject, a: RbacWriteAttributes, body: Record<string, unknown>, type: BodyType): ApiError | undefined {
  const name = nameOf(a, body);
  if (type === "json-patch") {
    return forbiddenWrite(a, name, `kpass cannot tell which rules a JSON patch leaves in ${a.resource} it cannot read, so it cannot check that user ${goQuote(subject.user)} holds them; send a merge patch with the complete rules, or update the whole object (or the pass needs "escalate" on ${a.resource})`);
  }
  const isPatch = type !== "object";
  if (isPatch && !("rules" in body)) {
    return forbiddenWrite(a, name, `kpass cannot read the rules ${a.resource} ${goQuote(name)} already grants on the cluster, so it cannot check this patch (fail closed); include the complete rules in it (or the pass needs "escalate" on ${a.resource})`);
  }
  const rules = readRules(body.rules, a);
  const scope = a.resource === "clusterroles" ? "" : a.namespace;
  const missing = confirmNoEscalation(subject, a, name, scope, rules);
  if (missing) return missing;
  if (a.resource === "clusterroles") {
    const aggregation = aggregationOf(body, isPatch, a);
    if (aggregation !== "none" && confirmNoEscalation(subject, a, name, "", FULL_AUTHORITY)) {
      const why = aggregation === "present" ? "must have cluster-admin privileges to use the aggregationRule" : "kpass cannot tell whether this ClusterRole keeps an aggregationRule, which needs cluster-admin privileges; set aggregationRule (null for none) in the patch";
      return forbiddenWrite(a, name, why);
    }
  }
  return undefined;
}

/** Whether the written ClusterRole has an aggregationRule with selectors ("unknown": a patch that may keep one). */
function aggregationOf(body: Record<string, unknown>, isPatch: boolean, a: RbacWriteAttributes): "none" | "present" | "unknown" {
  if (!("aggregationRule" in body)) return isPatch ? "unknown" : "none";
  const rule = body.aggregationRule;
  if (rule === null || rule === undefined) return "none";
  if (!isObject(rule)) throw badRequest(`${a.resource}.${RBAC_GROUP}: aggregationRule must be an object`);
  checkSpelling(a, rule, ["clusterRoleSelectors"], "aggregationRule.");
  if (!("clusterRoleSelectors" in rule)) return isPatch ? "unknown" : "none";
  const selectors = rule.clusterRoleSelectors;
  if (selectors === null || selectors === undefined || (Array.isArray(selectors) && selectors.length === 0)) return "none";
  return "present";
}

function checkBinding(subject: EscalationSubject, a: RbacWriteAttributes, body: Record<string, unknown>, type: BodyType): ApiError | undefined {
  const name = nameOf(a, body);
  const namespace = a.resource === "clusterrolebindings" ? "" : a.namespace;
  const ref = type === "json-patch" ? undefined : readRoleRef(body.roleRef, a);
  if (!ref) {
    return forbiddenWrite(a, name, `kpass cannot tell which role this ${type === "object" ? "object" : type.replace(/-/g, " ")} binds, so it cannot check that user ${goQuote(subject.user)} holds its permissions (fail closed); include the complete roleRef (apiGroup, kind, name)`);
  }
  if (bindAllowed(subject, ref, namespace)) return undefined;
  const known = ref.kind === "ClusterRole" && ref.apiGroup === RBAC_GROUP ? roleRules(ref.name) : undefined;
  if (!known) {
    const resource = ref.kind === "ClusterRole" ? "clusterroles" : ref.kind === "Role" ? "roles" : `${ref.kind.toLowerCase()}s`;
    const where = namespace ? ` in namespace ${goQuote(namespace)}` : "";
    return forbiddenWrite(
      a,
      name,
      `kpass cannot read ${resource}.${ref.apiGroup} ${goQuote(ref.name)} on the cluster to check that user ${goQuote(subject.user)} holds every permission it grants (it knows only the built-in ClusterRoles cluster-admin, admin, edit and view), so it refuses the binding (fail closed): binding it needs "bind" on ${resource} ${goQuote(ref.name)}${where}`,
    );
  }
  return confirmNoEscalation(subject, a, name, namespace, known);
}

// ---------------------------------------------------------------------------------------------
// validation.ConfirmNoEscalation / Covers, with the pass's rules as the owner's

/** One verb on one (group, resource[, name]) or one non-resource URL: what BreakdownRule yields. */
interface Atom {
  verb: string;
  group?: string;
  resource?: string;
  resourceName?: string;
  url?: string;
}

function combinations(rule: RbacRule): number {
  const groups = rule.apiGroups?.length ?? 0;
  const resources = rule.resources?.length ?? 0;
  const names = Math.max(1, rule.resourceNames?.length ?? 0);
  return rule.verbs.length * (groups * resources * names + (rule.nonResourceURLs?.length ?? 0));
}

function breakdown(rule: RbacRule): Atom[] {
  const atoms: Atom[] = [];
  for (const group of rule.apiGroups ?? []) {
    for (const resource of rule.resources ?? []) {
      for (const verb of rule.verbs) {
        if (rule.resourceNames && rule.resourceNames.length > 0) {
          for (const resourceName of rule.resourceNames) atoms.push({ verb, group, resource, resourceName });
        } else atoms.push({ verb, group, resource });
      }
    }
  }
  for (const url of rule.nonResourceURLs ?? []) for (const verb of rule.verbs) atoms.push({ verb, url });
  return atoms;
}

/** The owner rule applies in `scope` ("" is cluster-wide: only rules without a namespace restriction). */
function inScope(owner: PolicyRule, scope: string): boolean {
  const namespaces = owner.namespaces;
  if (namespaces === undefined || namespaces.includes("*")) return true;
  return scope !== "" && namespaces.includes(scope);
}

/**
 * Kubernetes' resourceCoversAll for one resource, plus the kpass owner forms "pods/*" (every
 * subresource of pods) and "*\/*" (every subresource), which kpass matches and Kubernetes does not have.
 */
function resourceCovered(owned: readonly string[], resource: string): boolean {
  if (owned.includes("*") || owned.includes(resource)) return true;
  const slash = resource.indexOf("/");
  if (slash < 0) return false;
  const base = resource.slice(0, slash);
  const sub = resource.slice(slash + 1);
  return owned.includes(`*/${sub}`) || owned.includes(`${base}/*`) || owned.includes("*/*");
}

function urlCovered(owned: readonly string[], url: string): boolean {
  return owned.some((o) => o === url || (o.endsWith("*") && url.startsWith(o.replace(/\*+$/, ""))));
}

/** ruleCovers(owner, atom) from Kubernetes' rbac validation, in `scope`. */
function covers(owner: PolicyRule, atom: Atom, scope: string): boolean {
  if (!inScope(owner, scope)) return false;
  if (!owner.verbs.includes("*") && !owner.verbs.includes(atom.verb)) return false;
  const ownerNames = owner.resourceNames ?? [];
  if (atom.resourceName === undefined ? ownerNames.length > 0 : ownerNames.length > 0 && !ownerNames.includes(atom.resourceName)) return false;
  if (atom.url !== undefined) return urlCovered(owner.nonResourceURLs ?? [], atom.url);
  const groups = owner.apiGroups ?? [];
  if (!groups.includes("*") && !groups.includes(atom.group!)) return false;
  return resourceCovered(owner.resources ?? [], atom.resource!);
}

/** CompactRules: single group/resource rules that differ only by verb are merged. */
function compact(atoms: readonly Atom[]): RbacRule[] {
  const merged = new Map<string, RbacRule>();
  const out: RbacRule[] = [];
  for (const atom of atoms) {
    if (atom.url !== undefined) {
      out.push({ verbs: [atom.verb], nonResourceURLs: [atom.url] });
      continue;
    }
    const key = JSON.stringify([atom.group, atom.resource, atom.resourceName ?? null]);
    const existing = merged.get(key);
    if (existing) {
      if (!existing.verbs.includes(atom.verb)) existing.verbs.push(atom.verb);
      continue;
    }
    const rule: RbacRule = { verbs: [atom.verb], apiGroups: [atom.group!], resources: [atom.resource!] };
    if (atom.resourceName !== undefined) rule.resourceNames = [atom.resourceName];
    merged.set(key, rule);
  }
  return [...out, ...merged.values()];
}

/** Go's %q of one string (strconv.Quote) for the printable strings rules hold. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return out + '"';
}

/** Go's %q of a []string: `["a" "b"]`. */
function goQuoteList(list: readonly string[]): string {
  return `[${list.map(goQuote).join(" ")}]`;
}

/** rbacv1helpers.CompactString. */
function compactString(rule: RbacRule): string {
  const parts: string[] = [];
  if (rule.apiGroups?.length) parts.push(`APIGroups:${goQuoteList(rule.apiGroups)}`);
  if (rule.resources?.length) parts.push(`Resources:${goQuoteList(rule.resources)}`);
  if (rule.nonResourceURLs?.length) parts.push(`NonResourceURLs:${goQuoteList(rule.nonResourceURLs)}`);
  if (rule.resourceNames?.length) parts.push(`ResourceNames:${goQuoteList(rule.resourceNames)}`);
  if (rule.verbs.length) parts.push(`Verbs:${goQuoteList(rule.verbs)}`);
  return `{${parts.join(", ")}}`;
}

function goLess(x: string, y: string): number {
  const bx = Buffer.from(x, "utf8");
  const by = Buffer.from(y, "utf8");
  return Buffer.compare(bx, by);
}

/** ConfirmNoEscalation: a 403 listing what the pass does not hold, or undefined when it holds all of `rules` in `scope`. */
function confirmNoEscalation(subject: EscalationSubject, a: RbacWriteAttributes, name: string, scope: string, rules: readonly RbacRule[]): ApiError | undefined {
  let total = 0;
  for (const rule of rules) total += combinations(rule);
  if (total > MAX_RULE_COMBINATIONS) {
    return forbiddenWrite(a, name, `the rules grant ${total} combinations of verb, group, resource and name, more than the ${MAX_RULE_COMBINATIONS} kpass checks for privilege escalation`);
  }
  const owners = subject.rules;
  const missing: Atom[] = [];
  for (const rule of rules) {
    for (const atom of breakdown(rule)) if (!owners.some((owner) => covers(owner, atom, scope))) missing.push(atom);
  }
  if (missing.length === 0) return undefined;
  const lines = [...new Set(compact(missing).map(compactString))].sort(goLess);
  return forbiddenWrite(a, name, `user ${goQuote(subject.user)} (groups=${goQuoteList(subject.groups)}) is attempting to grant RBAC permissions not currently held:\n${lines.join("\n")}`);
}

/** errors.NewForbidden(groupResource, name, err). */
function forbiddenWrite(a: RbacWriteAttributes, name: string, why: string): ApiError {
  const resource = `${a.resource}.${RBAC_GROUP}`;
  const message = name === "" ? `${resource} is forbidden: ${why}` : `${resource} ${goQuote(name)} is forbidden: ${why}`;
  return new ApiError(403, "Forbidden", message, { name, group: RBAC_GROUP, kind: a.resource });
}
