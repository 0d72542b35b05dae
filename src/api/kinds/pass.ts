import type { Identity } from "../../auth/identity.ts";
import { validateRules, type PolicyRule } from "../../auth/policy-rules.ts";
import { builtInRoleNames } from "../../auth/roles.ts";
import type { LabelSelectorSpec } from "../../store/label-selector.ts";
import { timestamp, type StoredObject } from "../../store/object.ts";
import { humanAge, humanDuration, type KindDefinition } from "../kind.ts";
import { objectSchema, type FieldProblem, type Schema } from "../schema.ts";

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

const stringList: Schema = { type: "array", items: { type: "string" } };

const ruleSchema: Schema = {
  type: "object",
  properties: {
    verbs: stringList,
    apiGroups: stringList,
    resources: stringList,
    resourceNames: stringList,
    namespaces: stringList,
    nonResourceURLs: stringList,
  },
};

const specSchema: Schema = {
  type: "object",
  required: ["user"],
  properties: {
    user: { type: "string", description: "user name the pass acts as (and impersonates, where the cluster asks for it)" },
    groups: stringList,
    clusters: {
      type: "object",
      properties: {
        names: stringList,
        selector: {
          type: "object",
          properties: {
            matchLabels: { type: "object", additionalProperties: { type: "string" } },
            matchExpressions: {
              type: "array",
              items: { type: "object", properties: { key: { type: "string" }, operator: { type: "string", enum: ["In", "NotIn", "Exists", "DoesNotExist"] }, values: stringList } },
            },
          },
        },
      },
    },
    roles: stringList,
    namespaces: stringList,
    rules: { type: "array", items: ruleSchema },
    admin: { type: "boolean" },
    expiresAt: { type: "string", format: "date-time" },
    ttl: { type: "string", description: "duration such as 720h, converted to expiresAt on create" },
  },
};

const statusSchema: Schema = { type: "object", properties: { tokenIssuedAt: { type: "string", format: "date-time" } } };

const DURATION_PART = /(\d+(?:\.\d+)?)(h|m|s|d)/g;

/** Parses "720h", "1h30m", "90s", "30d" into milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(h|m|s|d))+$/.test(text)) return undefined;
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 } as const;
  let total = 0;
  for (const [, n, u] of text.matchAll(DURATION_PART)) total += Number(n) * unit[u as keyof typeof unit];
  return total;
}

function validatePass(pass: Pass): FieldProblem[] {
  const spec = pass.spec;
  if (!spec) return [{ field: "spec", message: "Required value" }];
  const problems: FieldProblem[] = [];
  if (!spec.user) problems.push({ field: "spec.user", message: "Required value" });
  for (const [i, role] of (spec.roles ?? []).entries()) {
    if (!builtInRoleNames.includes(role)) problems.push({ field: `spec.roles[${i}]`, message: `Unsupported value: "${role}": supported values: ${builtInRoleNames.join(", ")}` });
  }
  if (spec.rules) {
    const checked = validateRules(spec.rules);
    if ("errors" in checked) problems.push(...checked.errors);
  }
  if (spec.expiresAt && Number.isNaN(Date.parse(spec.expiresAt))) problems.push({ field: "spec.expiresAt", message: "must be an RFC 3339 time" });
  if (spec.ttl && parseDuration(spec.ttl) === undefined) problems.push({ field: "spec.ttl", message: `Invalid value: "${spec.ttl}": must be a duration such as 720h or 30m` });
  return problems;
}

function clustersCell(pass: Pass): string {
  const names = pass.spec.clusters?.names ?? [];
  const selector = pass.spec.clusters?.selector;
  const parts = [...names];
  if (selector) parts.push(Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(",") || "<selector>");
  return parts.join(",") || "<none>";
}

export const passKind: KindDefinition<Pass> = {
  kind: "Pass",
  listKind: "PassList",
  plural: "passes",
  singular: "pass",
  shortNames: ["kp"],
  subresources: ["kubeconfig"],
  schema: objectSchema(specSchema, statusSchema),
  validate: validatePass,
  normalize(pass) {
    const { ttl, ...spec } = pass.spec;
    if (ttl && !spec.expiresAt) spec.expiresAt = timestamp(Date.now() + parseDuration(ttl)!);
    return { ...pass, spec };
  },
  columns: [
    { name: "Name", type: "string", format: "name", description: "Name of the pass" },
    { name: "User", type: "string", description: "User the pass acts as" },
    { name: "Clusters", type: "string", description: "Clusters the pass reaches" },
    { name: "Expires", type: "string", description: "When the pass expires" },
    { name: "Age", type: "string", description: "Time since creation" },
  ],
  row(pass, now) {
    const expires = pass.spec.expiresAt;
    const expiresCell = !expires ? "<never>" : Date.parse(expires) <= now ? "expired" : humanDuration(Date.parse(expires) - now);
    return [pass.metadata.name, pass.spec.user, clustersCell(pass), expiresCell, humanAge(pass.metadata.creationTimestamp, now)];
  },
  redact: (pass) => pass,
  visibleTo(pass: Pass, viewer: Identity) {
    return viewer.isAdmin || pass.metadata.name === viewer.pass;
  },
};
