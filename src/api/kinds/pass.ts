import { validateRules } from "../../auth/policy-rules.ts";
import { builtInRoleNames } from "../../auth/roles.ts";
import { timestamp, type StoredObject } from "../../core/object.ts";
import type { KindDefinition } from "../kind.ts";
import { objectSchema, type FieldProblem, type Schema } from "../schema.ts";
import type { PolicyRule, LabelSelectorSpec } from "../../core/pass.ts";
import { humanAge, humanDuration } from "../../core/duration.ts";
import type { Pass } from "../../core/pass.ts";
import { parseDuration } from "../../core/duration.ts";

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
  subresources: ["kubeconfig", "certificate"],
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
};
