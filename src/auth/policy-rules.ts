/**
 * Pass rules: Kubernetes RBAC PolicyRules plus a kpass `namespaces` list, matched against
 * RequestAttributes with the semantics of Kubernetes' RBAC authorizer.
 */
import type { RequestAttributes } from "./request-attributes.ts";
import type { PolicyRule } from "../core/pass.ts";


export interface FieldError {
  field: string;
  message: string;
}

export type ValidateRulesResult = { rules: PolicyRule[] } | { errors: FieldError[] };

const ALL = "*";

function verbMatches(rule: PolicyRule, verb: string): boolean {
  return rule.verbs.includes(ALL) || rule.verbs.includes(verb);
}

function apiGroupMatches(rule: PolicyRule, group: string): boolean {
  const groups = rule.apiGroups ?? [];
  return groups.includes(ALL) || groups.includes(group);
}

function resourceEntryMatches(entry: string, resource: string, subresource: string): boolean {
  if (entry === ALL) return true;
  const slash = entry.indexOf("/");
  if (slash < 0) return subresource === "" && entry === resource;
  if (subresource === "") return false;
  const ruleResource = entry.slice(0, slash);
  const ruleSubresource = entry.slice(slash + 1);
  return (ruleResource === ALL || ruleResource === resource) && (ruleSubresource === ALL || ruleSubresource === subresource);
}

function resourceMatches(rule: PolicyRule, resource: string, subresource: string): boolean {
  return (rule.resources ?? []).some((entry) => resourceEntryMatches(entry, resource, subresource));
}

function resourceNameMatches(rule: PolicyRule, name: string): boolean {
  const names = rule.resourceNames;
  if (names === undefined || names.length === 0) return true;
  return name !== "" && names.includes(name);
}

function namespaceMatches(rule: PolicyRule, namespace: string): boolean {
  const namespaces = rule.namespaces;
  if (namespaces === undefined || namespaces.includes(ALL)) return true;
  return namespace !== "" && namespaces.includes(namespace);
}

function nonResourceURLMatches(rule: PolicyRule, path: string): boolean {
  for (const url of rule.nonResourceURLs ?? []) {
    if (url === ALL || url === path) return true;
    if (url.endsWith(ALL)) {
      let prefix = url;
      while (prefix.endsWith(ALL)) prefix = prefix.slice(0, -1);
      if (path.startsWith(prefix)) return true;
    }
  }
  return false;
}

/** Whether this one rule allows the request. */
export function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  if (!namespaceMatches(rule, a.namespace)) return false;
  if (!verbMatches(rule, a.verb)) return false;
  if (!a.isResourceRequest) return nonResourceURLMatches(rule, a.path);
  return apiGroupMatches(rule, a.apiGroup) && resourceMatches(rule, a.resource, a.subresource) && resourceNameMatches(rule, a.name);
}

/** Whether any rule allows the request (no rules: nothing is allowed). */
export function rulesAllow(rules: readonly PolicyRule[], a: RequestAttributes): boolean {
  return rules.some((rule) => ruleAllows(rule, a));
}

// ---------------------------------------------------------------------------------------------
// Validation

const RULE_FIELDS = ["verbs", "apiGroups", "resources", "resourceNames", "namespaces", "nonResourceURLs"] as const;
type RuleField = (typeof RULE_FIELDS)[number];

const FIELD_HINTS: Readonly<Record<string, RuleField>> = {
  verb: "verbs",
  apiGroup: "apiGroups",
  apigroups: "apiGroups",
  groups: "apiGroups",
  resource: "resources",
  resourceName: "resourceNames",
  names: "resourceNames",
  namespace: "namespaces",
  nonResourceURL: "nonResourceURLs",
  nonResourceUrls: "nonResourceURLs",
};

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const VERB = /^[a-z][a-z0-9-]*$/;
const RESOURCE_PART = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

type ItemCheck = (value: string) => string | undefined;

function checkVerb(v: string): string | undefined {
  if (v === ALL || VERB.test(v)) return undefined;
  return 'must be a lower-case verb such as "get", "list", "create" or "*"';
}

function checkApiGroup(g: string): string | undefined {
  if (g === "" || g === ALL) return undefined;
  if (g.includes("/")) return 'an API group has no version: use "apps", not "apps/v1"';
  if (g === "core" || g === "v1") return 'the core API group is "" (the empty string)';
  if (g.length > 253 || !DNS_SUBDOMAIN.test(g)) return 'must be an API group such as "", "apps", "networking.k8s.io" or "*"';
  return undefined;
}

function checkResource(r: string): string | undefined {
  if (r === ALL) return undefined;
  const parts = r.split("/");
  const valid =
    parts.length <= 2 &&
    r.length <= 253 &&
    parts.every((p) => RESOURCE_PART.test(p) || (p === ALL && parts.length === 2));
  if (valid) return undefined;
  if (parts.length <= 2 && parts[0]?.includes(".")) return 'resources are plain names; put the API group in apiGroups (e.g. "deployments" with apiGroups ["apps"])';
  return 'must be a lower-case resource such as "pods", "pods/exec", "*/status", "pods/*" or "*"';
}

function checkResourceName(n: string): string | undefined {
  if (n === "") return "must not be empty";
  if (n === ALL) return "resourceNames has no wildcard; omit resourceNames to allow every name";
  if (n.length > 253) return "must be at most 253 characters";
  if (n.includes("/") || n.includes("%") || n === "." || n === "..") return 'must be an object name (no "/", "%", "." or "..")';
  return undefined;
}

function checkNamespace(ns: string): string | undefined {
  if (ns === ALL) return undefined;
  if (ns.length > 63 || !DNS_LABEL.test(ns)) return 'must be a namespace name (lower-case DNS label) or "*"';
  return undefined;
}

function checkNonResourceURL(u: string): string | undefined {
  if (u === ALL) return undefined;
  if (!u.startsWith("/")) return 'must start with "/" (or be "*")';
  const star = u.indexOf(ALL);
  if (star >= 0 && star !== u.length - 1) return 'a "*" may only end the path';
  if (/[\s?#]/.test(u)) return "must be a plain path without spaces, query or fragment";
  if (u.length > 1024) return "must be at most 1024 characters";
  return undefined;
}

const ITEM_CHECKS: Readonly<Record<RuleField, ItemCheck>> = {
  verbs: checkVerb,
  apiGroups: checkApiGroup,
  resources: checkResource,
  resourceNames: checkResourceName,
  namespaces: checkNamespace,
  nonResourceURLs: checkNonResourceURL,
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function readStringList(value: unknown, field: string, check: ItemCheck, errors: FieldError[]): string[] | undefined {
  if (!Array.isArray(value)) {
    errors.push({ field, message: "must be a list of strings" });
    return undefined;
  }
  const out: string[] = [];
  value.forEach((item: unknown, i) => {
    if (typeof item !== "string") {
      errors.push({ field: `${field}[${i}]`, message: "must be a string" });
      return;
    }
    const problem = check(item);
    if (problem !== undefined) errors.push({ field: `${field}[${i}]`, message: problem });
    else out.push(item);
  });
  return out;
}

function validateRule(value: unknown, base: string, errors: FieldError[]): PolicyRule | undefined {
  if (!isPlainObject(value)) {
    errors.push({ field: base, message: "must be an object with verbs and apiGroups/resources or nonResourceURLs" });
    return undefined;
  }
  const before = errors.length;
  for (const key of Object.keys(value)) {
    if (value[key] === undefined || (RULE_FIELDS as readonly string[]).includes(key)) continue;
    const hint = FIELD_HINTS[key];
    errors.push({ field: `${base}.${key}`, message: hint ? `unknown field; did you mean "${hint}"?` : "unknown field" });
  }

  const lists: Partial<Record<RuleField, string[]>> = {};
  for (const field of RULE_FIELDS) {
    if (value[field] === undefined) continue;
    const list = readStringList(value[field], `${base}.${field}`, ITEM_CHECKS[field], errors);
    if (list !== undefined) lists[field] = list;
  }

  const present = (field: RuleField): boolean => value[field] !== undefined;
  const nonEmpty = (field: RuleField): boolean => Array.isArray(value[field]) && (value[field] as unknown[]).length > 0;
  // A field that is present but not a list has been reported already; do not report it twice.
  const missing = (field: RuleField): boolean => !nonEmpty(field) && (!present(field) || Array.isArray(value[field]));

  if (missing("verbs")) errors.push({ field: `${base}.verbs`, message: "must list at least one verb" });
  if (present("namespaces") && missing("namespaces")) {
    errors.push({ field: `${base}.namespaces`, message: 'must list at least one namespace (or "*"), or be omitted to allow every namespace' });
  }
  if (nonEmpty("nonResourceURLs")) {
    for (const field of ["apiGroups", "resources", "resourceNames", "namespaces"] as const) {
      if (present(field)) {
        errors.push({ field: `${base}.${field}`, message: "a rule with nonResourceURLs cannot also name resources or namespaces" });
      }
    }
  } else {
    if (missing("apiGroups")) {
      errors.push({ field: `${base}.apiGroups`, message: 'resource rules must list at least one API group ("" is the core group)' });
    }
    if (missing("resources")) errors.push({ field: `${base}.resources`, message: "resource rules must list at least one resource" });
  }
  if (errors.length > before) return undefined;

  const rule: PolicyRule = { verbs: lists.verbs ?? [] };
  for (const field of RULE_FIELDS) {
    if (field === "verbs") continue;
    const list = lists[field];
    if (list !== undefined) rule[field] = list;
  }
  return rule;
}

/**
 * Checks rules received from a client (e.g. a Pass's spec.rules). Returns copies of the rules when
 * all are valid, or every problem found with its field path (`spec.rules[1].verbs`).
 */
export function validateRules(rules: unknown, fieldPath = "spec.rules"): ValidateRulesResult {
  if (!Array.isArray(rules)) return { errors: [{ field: fieldPath, message: "must be a list of rules" }] };
  const errors: FieldError[] = [];
  const out: PolicyRule[] = [];
  rules.forEach((value: unknown, i) => {
    const rule = validateRule(value, `${fieldPath}[${i}]`, errors);
    if (rule !== undefined) out.push(rule);
  });
  return errors.length > 0 ? { errors } : { rules: out };
}
