import type { Identity } from "../auth/identity.ts";
import type { StoredObject } from "../store/object.ts";
import type { FieldProblem, Schema } from "./schema.ts";

export const GROUP = "cluster.kpass.dev";
export const VERSION = "v1beta1";
export const API_VERSION = `${GROUP}/${VERSION}`;

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
  /** The object as `viewer` may see it (credentials stripped for non-admins). */
  redact(object: T, viewer: Identity): T;
  /** Whether `viewer` may see the object at all. */
  visibleTo(object: T, viewer: Identity): boolean;
}

const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A lowercase RFC 1123 subdomain: what object names (and so file names) may be. */
export function isDnsSubdomain(name: string): boolean {
  return DNS1123_SUBDOMAIN.test(name);
}

/** Kubernetes' short human durations: 45s, 5m10s, 3h, 2d5h, 400d. */
export function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (days < 365 * 2) return `${days}d`;
  return `${Math.floor(days / 365)}y`;
}

/** The AGE column: time since `timestamp`. */
export function humanAge(timestamp: string, now: number): string {
  return humanDuration(now - Date.parse(timestamp));
}
