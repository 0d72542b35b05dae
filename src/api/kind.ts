import type { StoredObject } from "../core/object.ts";
import type { FieldProblem, Schema } from "./schema.ts";

export interface TableColumn {
  name: string;
  type: "string" | "integer" | "date";
  format?: string;
  description: string;
  priority?: number;
}

/** Everything the generic REST handler needs to serve one kind of kpass object. */
export interface KindDefinition<T extends StoredObject> {
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  subresources: string[];
  schema: Schema;
  /** Semantic checks after schema pruning; field paths name what is wrong. */
  validate(object: T): FieldProblem[];
  /** Canonical form stored (defaults, trimmed values). */
  normalize(object: T): T;
  columns: TableColumn[];
  row(object: T, now: number): unknown[];
  /** The object as a caller who may not see credentials sees it. */
  redact(object: T): T;
}
