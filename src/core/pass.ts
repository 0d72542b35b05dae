/** The Pass object: one person's credential and what it may do. */
import type { StoredObject } from "./object.ts";

export interface PolicyRule {
  verbs: string[];
  /** "" is the core group; "*" any group. */
  apiGroups?: string[];
  /** "pods", "pods/exec", "pods/*" (any subresource of pods), "*" (everything incl. subresources); "*" before the slash with a subresource after it matches that subresource of any resource. */
  resources?: string[];
  /** Restricts the object name; never matches a request without one (plain list, watch, create). */
  resourceNames?: string[];
  /** kpass extension. Absent or containing "*": any namespace and cluster-scoped requests. Otherwise only those namespaces. */
  namespaces?: string[];
  /** Non-resource paths; a trailing "*" matches by prefix; "*" alone matches every path. */
  nonResourceURLs?: string[];
}

/** The structured `matchLabels`/`matchExpressions` form used inside object specs. */
export interface LabelSelectorSpec {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

export interface PassSpec {
  user: string;
  groups?: string[];
  /** Which clusters the pass reaches: by name ("*" = all) and/or by label selector. */
  clusters?: { names?: string[]; selector?: LabelSelectorSpec };
  /** Built-in roles (view, edit, admin, cluster-admin) expanded to rules. */
  roles?: string[];
  /** Namespaces the roles apply in; absent = every namespace and cluster-scoped resources. */
  namespaces?: string[];
  rules?: PolicyRule[];
  /** May manage kpass itself: Clusters, Passes, and see cluster credentials. */
  admin?: boolean;
  expiresAt?: string;
  /** Input only: a Go-style duration ("720h") turned into expiresAt when the pass is created. */
  ttl?: string;
}

export interface PassStatus {
  tokenIssuedAt?: string;
}

export interface Pass extends StoredObject {
  spec: PassSpec;
  status?: PassStatus;
}

/** Whether `pass` has an expiry and it has come (`now` in ms). */
export function passExpired(pass: Pass, now: number): boolean {
  return pass.spec.expiresAt !== undefined && Date.parse(pass.spec.expiresAt) <= now;
}
