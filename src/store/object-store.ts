import type { FilePersistence } from "./file-persistence.ts";
import { isDnsSubdomain, timestamp, type StoreEvent, type StoredObject, type WatchEventType } from "../core/object.ts";
import { GROUP } from "../core/api-group.ts";
import { alreadyExists, ApiError, conflict, gone, invalid, notFound, type GroupResource } from "../core/status.ts";

/** A global, monotonically increasing revision shared by every store, as etcd's is. */
export class RevisionClock {
  private current = 0;
  advanceTo(revision: number): void {
    if (revision > this.current) this.current = revision;
  }
  next(): number {
    return ++this.current;
  }
  get value(): number {
    return this.current;
  }
}

export type StoreListener<T extends StoredObject> = (event: StoreEvent<T>) => void;

export interface Watch {
  stop(): void;
}

const HISTORY_LIMIT = 2048;

/**
 * All objects of one resource, in memory, each change persisted before it is applied and
 * acknowledged. Writes are serialised so resourceVersions are assigned in commit order.
 */
export class ObjectStore<T extends StoredObject> {
  private readonly objects = new Map<string, T>();
  private readonly history: StoreEvent<T>[] = [];
  private readonly listeners = new Set<StoreListener<T>>();
  private writeQueue: Promise<unknown> = Promise.resolve();
  /** The revision before which history is incomplete (watches from older revisions get 410 Gone). */
  private historyStart = 0;

  constructor(
    readonly resource: string,
    private readonly clock: RevisionClock,
    private readonly persistence: FilePersistence,
  ) {}

  async load(): Promise<void> {
    this.clock.advanceTo(await this.persistence.lastDeletedRevision());
    for (const object of await this.persistence.loadAll(this.resource)) {
      this.objects.set(object.metadata.name, object as T);
      this.clock.advanceTo(Number(object.metadata.resourceVersion) || 0);
    }
    this.historyStart = this.clock.value;
  }

  get(name: string): T | undefined {
    return this.objects.get(name);
  }

  list(): T[] {
    return [...this.objects.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  get size(): number {
    return this.objects.size;
  }

  get revision(): number {
    return this.clock.value;
  }

  /** Runs `mutation` alone; it sees the latest state and returns the change to persist. */
  private serialize<R>(mutation: () => Promise<R>): Promise<R> {
    const result = this.writeQueue.then(mutation, mutation);
    this.writeQueue = result.catch(() => undefined);
    return result;
  }

  create(object: T): Promise<T> {
    return this.serialize(async () => {
      const name = object.metadata.name;
      // Names become file names: checked here too, whoever calls (the REST layer checks first).
      if (!isDnsSubdomain(name)) throw invalid({ group: GROUP, kind: object.kind }, name, [{ field: "metadata.name", message: `Invalid value: ${JSON.stringify(name)}: must be a lowercase RFC 1123 subdomain` }]);
      if (this.objects.has(name)) {
        throw alreadyExists(this.groupResource, name);
      }
      const stored = this.stamp(object, {
        uid: crypto.randomUUID(),
        generation: 1,
        creationTimestamp: timestamp(),
      });
      await this.persistence.write(this.resource, stored);
      this.commit("ADDED", stored);
      return stored;
    });
  }

  /**
   * Replaces an object. `change` receives the current object and returns the next one (or throws);
   * a caller-supplied resourceVersion that is not current is a 409 Conflict.
   */
  update(name: string, change: (current: T) => T, options: { bumpGeneration?: (current: T, next: T) => boolean } = {}): Promise<T> {
    return this.serialize(async () => {
      const current = this.objects.get(name);
      if (!current) throw this.notFound(name);
      const next = change(current);
      const expected = next.metadata.resourceVersion;
      if (expected && expected !== current.metadata.resourceVersion) {
        throw conflict(this.groupResource, name, "the object has been modified; please apply your changes to the latest version and try again");
      }
      const generation = current.metadata.generation + (options.bumpGeneration?.(current, next) ? 1 : 0);
      const stored = this.stamp(next, {
        uid: current.metadata.uid,
        generation,
        creationTimestamp: current.metadata.creationTimestamp,
      });
      await this.persistence.write(this.resource, stored);
      this.commit("MODIFIED", stored);
      return stored;
    });
  }

  delete(name: string, precondition?: { uid?: string; resourceVersion?: string }): Promise<T> {
    return this.serialize(async () => {
      const current = this.objects.get(name);
      if (!current) throw this.notFound(name);
      if (precondition?.uid && precondition.uid !== current.metadata.uid) {
        throw new ApiError(409, "Conflict", `Precondition failed: UID in precondition: ${precondition.uid}, UID in object meta: ${current.metadata.uid}`);
      }
      if (precondition?.resourceVersion && precondition.resourceVersion !== current.metadata.resourceVersion) {
        throw new ApiError(409, "Conflict", `Precondition failed: ResourceVersion in precondition: ${precondition.resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
      }
      const revision = this.clock.next();
      await this.persistence.remove(this.resource, name, revision);
      const deleted = { ...current, metadata: { ...current.metadata, resourceVersion: String(revision) } };
      this.objects.delete(name);
      this.publish({ type: "DELETED", object: deleted, revision });
      return deleted;
    });
  }

  /** Subscribes to every change from now on (for controllers such as the health prober). */
  subscribe(listener: StoreListener<T>): Watch {
    this.listeners.add(listener);
    return { stop: () => this.listeners.delete(listener) };
  }

  /**
   * Events after `fromRevision` followed by live ones. With no revision, the current objects are
   * replayed as ADDED first (Kubernetes' "start at most recent" semantics).
   */
  watch(fromRevision: number | undefined, listener: StoreListener<T>): Watch {
    if (fromRevision === undefined) {
      for (const object of this.list()) {
        listener({ type: "ADDED", object, revision: Number(object.metadata.resourceVersion) });
      }
    } else if (fromRevision !== this.clock.value) {
      // Older than the history kept, or from a future this process never wrote (a restart).
      if (fromRevision < this.historyStart || fromRevision > this.clock.value) {
        throw gone(`too old resource version: ${fromRevision} (${this.clock.value})`);
      }
      for (const event of this.history) if (event.revision > fromRevision) listener(event);
    }
    return this.subscribe(listener);
  }

  private stamp(object: T, fixed: { uid: string; generation: number; creationTimestamp: string }): T {
    return {
      ...object,
      metadata: { ...object.metadata, ...fixed, resourceVersion: String(this.clock.next()) },
    };
  }

  private commit(type: WatchEventType, object: T): void {
    this.objects.set(object.metadata.name, object);
    this.publish({ type, object, revision: Number(object.metadata.resourceVersion) });
  }

  private publish(event: StoreEvent<T>): void {
    this.history.push(event);
    if (this.history.length > HISTORY_LIMIT) {
      const dropped = this.history.shift()!;
      this.historyStart = dropped.revision;
    }
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A broken watcher must not stop others or the write that triggered it.
      }
    }
  }

  private notFound(name: string): ApiError {
    return notFound(this.groupResource, name);
  }

  private get groupResource(): GroupResource {
    return { group: GROUP, resource: this.resource };
  }
}
