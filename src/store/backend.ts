/**
 * Where a store's objects live: files in one process, or etcd shared by several. An ObjectStore
 * keeps every object in memory and learns of each change — its own writes and other replicas'
 * alike — from its backend's feed, in revision order; writes are compare-and-swap on the revision
 * the writer last saw.
 */
import type { StoreEvent, StoredObject } from "../core/object.ts";

/**
 * A write's outcome: the revision it got, or — when the compare failed — the revision of the change
 * that won (the feed brings it), or `gone` when the object no longer exists at all.
 */
export type WriteOutcome = { ok: true; revision: number } | { ok: false; revision: number; gone?: boolean };

export interface StoreHealth {
  /** False while writes cannot be made (etcd unreachable): reads are served from memory meanwhile. */
  writable: boolean;
  detail?: string;
}

export interface ObjectFeed {
  /** One change, in revision order. */
  apply(event: StoreEvent): void;
  /** The feed lost its place (a compacted revision): these are all the objects now, at `revision`. */
  reset(objects: StoredObject[], revision: number): void;
}

export interface Backend {
  readonly resource: string;
  /** Where changes go, from the start (the store attaches itself when it is made). */
  attach(feed: ObjectFeed): void;
  /** Every object now (resourceVersion set); changes after them go to the feed. */
  start(): Promise<StoredObject[]>;
  /** The revision the feed has delivered up to. */
  readonly revision: number;
  /** Resolves true once the feed has delivered `revision`, false after `timeoutMs`. */
  reached(revision: number, timeoutMs: number): Promise<boolean>;
  /**
   * Stores a new object unless one of its name exists. The resourceVersion in `object` is ignored.
   * A write that cannot be made (etcd unreachable) throws a 503 ApiError.
   */
  create(object: StoredObject): Promise<WriteOutcome>;
  /** Replaces the object when it is still at revision `expected`. */
  update(object: StoredObject, expected: number): Promise<WriteOutcome>;
  /** Deletes `current` when it is still at revision `expected`. */
  remove(current: StoredObject, expected: number): Promise<WriteOutcome>;
  /** The object as stored now, bypassing memory: for a name the feed has not brought yet. */
  read(name: string): Promise<StoredObject | undefined>;
  /** Every object as it was at `revision`, or undefined when that past is no longer kept. */
  listAt(revision: number): Promise<StoredObject[] | undefined>;
  health(): StoreHealth;
  stop(): void;
}
