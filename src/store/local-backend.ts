/**
 * The single-process backend: objects in files, revisions from a clock this process owns, and a
 * feed that is simply each write, applied as soon as it is durable. Writes are serialised, so the
 * check and the write of one compare-and-swap cannot interleave with another's.
 */
import type { StoredObject, StoreEvent, WatchEventType } from "../core/object.ts";
import type { Backend, ObjectFeed, StoreHealth, WriteOutcome } from "./backend.ts";
import type { FilePersistence } from "./file-persistence.ts";

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

export class LocalBackend implements Backend {
  private readonly revisions = new Map<string, number>();
  private feed?: ObjectFeed;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly resource: string,
    private readonly clock: RevisionClock,
    private readonly persistence: FilePersistence,
  ) {}

  attach(feed: ObjectFeed): void {
    this.feed = feed;
  }

  async start(): Promise<StoredObject[]> {
    this.clock.advanceTo(await this.persistence.lastDeletedRevision());
    const objects = await this.persistence.loadAll(this.resource);
    for (const object of objects) {
      const revision = Number(object.metadata.resourceVersion) || 0;
      this.revisions.set(object.metadata.name, revision);
      this.clock.advanceTo(revision);
    }
    return objects;
  }

  get revision(): number {
    return this.clock.value;
  }

  async reached(revision: number): Promise<boolean> {
    return revision <= this.clock.value;
  }

  private serialize<R>(step: () => Promise<R>): Promise<R> {
    const result = this.queue.then(step, step);
    this.queue = result.catch(() => undefined);
    return result;
  }

  create(object: StoredObject): Promise<WriteOutcome> {
    return this.serialize(async () => {
      if (this.revisions.has(object.metadata.name)) return { ok: false, revision: this.clock.value };
      return this.put("ADDED", object);
    });
  }

  update(object: StoredObject, expected: number): Promise<WriteOutcome> {
    return this.serialize(async () => {
      if (this.revisions.get(object.metadata.name) !== expected) return { ok: false, revision: this.clock.value };
      return this.put("MODIFIED", object);
    });
  }

  remove(current: StoredObject, expected: number): Promise<WriteOutcome> {
    return this.serialize(async () => {
      const name = current.metadata.name;
      if (this.revisions.get(name) !== expected) return { ok: false, revision: this.clock.value };
      const revision = this.clock.next();
      await this.persistence.remove(this.resource, name, revision);
      this.revisions.delete(name);
      this.publish({ type: "DELETED", object: { ...current, metadata: { ...current.metadata, resourceVersion: String(revision) } }, revision });
      return { ok: true, revision };
    });
  }

  async read(): Promise<StoredObject | undefined> {
    // Memory is the store: there is nothing the feed has not brought.
    return undefined;
  }

  async listAt(): Promise<StoredObject[] | undefined> {
    // Files keep no past: what memory's history cannot answer is gone.
    return undefined;
  }

  health(): StoreHealth {
    return { writable: true };
  }

  stop(): void {}

  private async put(type: WatchEventType, object: StoredObject): Promise<WriteOutcome> {
    const revision = this.clock.next();
    const stored = { ...object, metadata: { ...object.metadata, resourceVersion: String(revision) } };
    await this.persistence.write(this.resource, stored);
    this.revisions.set(object.metadata.name, revision);
    this.publish({ type, object: stored, revision });
    return { ok: true, revision };
  }

  private publish(event: StoreEvent): void {
    this.feed?.apply(event);
  }
}
