/** A Kubernetes timestamp (RFC 3339, whole seconds), as metadata and status fields carry them. */
export function timestamp(ms: number = Date.now()): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
}

/** The metadata every stored object carries, as Kubernetes ObjectMeta (cluster-scoped subset). */
export interface ObjectMeta {
  name: string;
  uid: string;
  resourceVersion: string;
  generation: number;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoreEvent<T extends StoredObject = StoredObject> {
  type: WatchEventType;
  object: T;
  /** Numeric resourceVersion of the change, for resuming watches. */
  revision: number;
}

const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A lowercase RFC 1123 subdomain: what object names (and so file names) may be. */
export function isDnsSubdomain(name: string): boolean {
  return DNS1123_SUBDOMAIN.test(name);
}

