/**
 * A small structural schema: one description of a kind that drives unknown-field pruning
 * (kubectl's --validate / fieldValidation), type checks, and the OpenAPI v3 document.
 */
export type Schema =
  | { type: "object"; description?: string; properties?: Record<string, Schema>; additionalProperties?: Schema; required?: string[]; preserveUnknownFields?: boolean }
  | { type: "array"; description?: string; items: Schema }
  | { type: "string"; description?: string; enum?: string[]; format?: string }
  | { type: "boolean"; description?: string }
  | { type: "integer"; description?: string };

export interface FieldProblem {
  field: string;
  message: string;
}

export interface PruneResult {
  value: unknown;
  unknownFields: string[];
  typeErrors: FieldProblem[];
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Returns a copy of `value` without fields the schema does not know, listing what was dropped. */
export function prune(value: unknown, schema: Schema, path: string): PruneResult {
  const unknownFields: string[] = [];
  const typeErrors: FieldProblem[] = [];

  const walk = (v: unknown, s: Schema, at: string): unknown => {
    if (v === null || v === undefined) return v;
    switch (s.type) {
      case "object": {
        if (typeOf(v) !== "object") {
          typeErrors.push({ field: at, message: `must be an object, got ${typeOf(v)}` });
          return undefined;
        }
        if (s.preserveUnknownFields) return v;
        const out: Record<string, unknown> = {};
        for (const [key, child] of Object.entries(v as Record<string, unknown>)) {
          const childSchema = s.properties?.[key] ?? s.additionalProperties;
          const childPath = s.properties?.[key] || !s.additionalProperties ? `${at}.${key}` : `${at}[${key}]`;
          if (!childSchema) {
            unknownFields.push(`${at}.${key}`);
            continue;
          }
          const pruned = walk(child, childSchema, childPath);
          if (pruned !== undefined) out[key] = pruned;
        }
        return out;
      }
      case "array":
        if (!Array.isArray(v)) {
          typeErrors.push({ field: at, message: `must be an array, got ${typeOf(v)}` });
          return undefined;
        }
        return v.map((item, i) => walk(item, s.items, `${at}[${i}]`));
      case "string":
        if (typeof v !== "string") typeErrors.push({ field: at, message: `must be a string, got ${typeOf(v)}` });
        else if (s.enum && !s.enum.includes(v)) typeErrors.push({ field: at, message: `Unsupported value: "${v}": supported values: ${s.enum.map((e) => `"${e}"`).join(", ")}` });
        return v;
      case "boolean":
        if (typeof v !== "boolean") typeErrors.push({ field: at, message: `must be a boolean, got ${typeOf(v)}` });
        return v;
      case "integer":
        if (typeof v !== "number" || !Number.isInteger(v)) typeErrors.push({ field: at, message: `must be an integer, got ${typeOf(v)}` });
        return v;
    }
  };

  return { value: walk(value, schema, path), unknownFields, typeErrors };
}

const stringMap: Schema = { type: "object", additionalProperties: { type: "string" } };

/** The ObjectMeta fields a cluster-scoped kpass object accepts from clients. */
export const objectMetaSchema: Schema = {
  type: "object",
  properties: {
    name: { type: "string" },
    generateName: { type: "string" },
    uid: { type: "string" },
    resourceVersion: { type: "string" },
    generation: { type: "integer" },
    creationTimestamp: { type: "string", format: "date-time" },
    labels: stringMap,
    annotations: stringMap,
    namespace: { type: "string" },
    managedFields: { type: "array", items: { type: "object", preserveUnknownFields: true } },
    finalizers: { type: "array", items: { type: "string" } },
    ownerReferences: { type: "array", items: { type: "object", preserveUnknownFields: true } },
    selfLink: { type: "string" },
  },
};

export function objectSchema(spec: Schema, status: Schema): Schema {
  return {
    type: "object",
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: objectMetaSchema,
      spec,
      status,
    },
  };
}

/** JSON Schema for OpenAPI v3 (our Schema is already a subset of it, bar one extension name). */
export function toOpenApi(schema: Schema): Record<string, unknown> {
  const { preserveUnknownFields, ...rest } = schema as Schema & { preserveUnknownFields?: boolean };
  const out: Record<string, unknown> = { ...rest };
  if (preserveUnknownFields) out["x-kubernetes-preserve-unknown-fields"] = true;
  if (schema.type === "object") {
    if (schema.properties) out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, toOpenApi(v)]));
    if (schema.additionalProperties) out.additionalProperties = toOpenApi(schema.additionalProperties);
  }
  if (schema.type === "array") out.items = toOpenApi(schema.items);
  return out;
}
