import type { Backend, StoreHealth, WriteOutcome } from "./backend.ts";
import { isDnsSubdomain, timestamp, type StoreEvent, type StoredObject } from "../core/object.ts";
import { GROUP } from "../core/api-group.ts";
import { alreadyExists, ApiError, conflict, expired, gone, invalid, notFound, type GroupResource } from "../core/status.ts";

export type StoreListener<T extends StoredObject> = (event: StoreEvent<T>) => void;

export interface Watch {
  stop(): void;
}

const HISTORY_LIMIT = 2048;

const byName = (a: StoredObject, b: StoredObject) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);

/** kube-apiserver's words for a continue token it can no longer serve consistently. */
const CONTINUE_EXPIRED =
  "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

const MISS_MEMORY_MS = 1_000;
const MISS_LIMIT = 10_000;

/** How long a write waits for its own change to come back through the feed before answering anyway. */
const FEED_WAIT_MS = 5_000;
/** Compare-and-swap retries of one update racing other writers before it gives up with 409. */
const MAX_ATTEMPTS = 8;

/**
 * All objects of one resource in memory, kept by the backend's feed of changes. A write is
 * acknowledged once durable in the backend and visible here; concurrent writers (other requests,
 * other replicas) are ordered by compare-and-swap on resourceVersion.
 */
export class ObjectStore<T extends StoredObject> {
  private readonly objects = new Map<string, T>();
  private readonly history: StoreEvent<T>[] = [];
  private readonly listeners = new Set<StoreListener<T>>();
  /** The revision before which history is incomplete (watches from older revisions get 410 Gone). */
  private historyStart = 0;
  /** Watches of clients, ended when the feed had to start over (they re-list, as after a 410). */
  private readonly clientWatches = new Set<() => void>();
  /** Names recently asked of the backend in vain (see fetch). */
  private readonly misses = new Map<string, number>();

  constructor(
    readonly resource: string,
    private readonly backend: Backend,
  ) {
    backend.attach({
      apply: (event) => this.apply(event as StoreEvent<T>),
      reset: (next, revision) => this.reset(next as T[], revision),
    });
  }

  async load(): Promise<void> {
    const objects = await this.backend.start();
    for (const object of objects) this.objects.set(object.metadata.name, object as T);
    this.historyStart = this.backend.revision;
  }

  get(name: string): T | undefined {
    return this.objects.get(name);
  }

  /**
   * The object, from memory when memory has it as `wanted`, else from the backend itself: a name
   * created (or re-created) through another replica a moment ago, before the feed brought it. A
   * name the backend did not have either is not asked again for a second, so a stale credential
   * replayed in a loop costs memory lookups, not etcd reads.
   */
  async fetch(name: string, wanted: (object: T) => boolean = () => true): Promise<T | undefined> {
    const cached = this.objects.get(name);
    if (cached && wanted(cached)) return cached;
    const missedAt = this.misses.get(name);
    if (missedAt !== undefined && Date.now() - missedAt < MISS_MEMORY_MS) return cached;
    const stored = (await this.backend.read(name).catch(() => undefined)) as T | undefined;
    if (stored && wanted(stored)) return stored;
    if (this.misses.size >= MISS_LIMIT) this.misses.clear();
    this.misses.set(name, Date.now());
    return cached;
  }

  list(): T[] {
    return [...this.objects.values()].sort(byName);
  }

  /**
   * Every object as it was at `revision` (a paged LIST's first page): from memory when nothing of
   * this resource changed since, else from the backend's history (etcd keeps it until compaction).
   */
  async listAt(revision: number): Promise<T[]> {
    if (revision > this.backend.revision) await this.backend.reached(revision, FEED_WAIT_MS);
    const unchanged = revision >= this.historyStart && revision <= this.backend.revision && !this.history.some((e) => e.revision > revision);
    if (unchanged) return this.list();
    const past = await this.backend.listAt(revision);
    if (!past) throw expired(CONTINUE_EXPIRED);
    return past.sort(byName) as T[];
  }

  get size(): number {
    return this.objects.size;
  }

  get revision(): number {
    return this.backend.revision;
  }

  health(): StoreHealth {
    return this.backend.health();
  }

  /** Whether memory has caught up with `revision` (a resourceVersion another replica handed out). */
  reached(revision: number, timeoutMs: number): Promise<boolean> {
    return this.backend.reached(revision, timeoutMs);
  }

  stop(): void {
    this.backend.stop();
  }

  async create(object: T): Promise<T> {
    const name = object.metadata.name;
    // Names become file names and keys: checked here too, whoever calls (the REST layer checks first).
    if (!isDnsSubdomain(name)) throw invalid({ group: GROUP, kind: object.kind }, name, [{ field: "metadata.name", message: `Invalid value: ${JSON.stringify(name)}: must be a lowercase RFC 1123 subdomain` }]);
    if (this.objects.has(name)) throw alreadyExists(this.groupResource, name);
    const stamped = this.stamp(object, { uid: crypto.randomUUID(), generation: 1, creationTimestamp: timestamp() });
    const outcome = await this.backend.create(stamped);
    if (!outcome.ok) throw alreadyExists(this.groupResource, name);
    return this.settled(stamped, outcome.revision);
  }

  /**
   * Replaces an object. `change` receives the current object and returns the next one (or throws);
   * a caller-supplied resourceVersion that is not current is a 409 Conflict. When another writer
   * got in first, `change` runs again on what that writer left.
   */
  async update(name: string, change: (current: T) => T, options: { bumpGeneration?: (current: T, next: T) => boolean } = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const current = this.objects.get(name);
      if (!current) throw this.notFound(name);
      const next = change(current);
      const expected = next.metadata.resourceVersion;
      if (expected && expected !== current.metadata.resourceVersion) throw this.modified(name);
      const generation = current.metadata.generation + (options.bumpGeneration?.(current, next) ? 1 : 0);
      const stamped = this.stamp(next, { uid: current.metadata.uid, generation, creationTimestamp: current.metadata.creationTimestamp });
      const outcome = await this.backend.update(stamped, Number(current.metadata.resourceVersion));
      if (outcome.ok) return this.settled(stamped, outcome.revision);
      await this.sawRace(name, outcome, attempt);
    }
  }

  async delete(name: string, precondition?: { uid?: string; resourceVersion?: string }): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const current = this.objects.get(name);
      if (!current) throw this.notFound(name);
      if (precondition?.uid && precondition.uid !== current.metadata.uid) {
        throw new ApiError(409, "Conflict", `Precondition failed: UID in precondition: ${precondition.uid}, UID in object meta: ${current.metadata.uid}`);
      }
      if (precondition?.resourceVersion && precondition.resourceVersion !== current.metadata.resourceVersion) {
        throw new ApiError(409, "Conflict", `Precondition failed: ResourceVersion in precondition: ${precondition.resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
      }
      const outcome = await this.backend.remove(current, Number(current.metadata.resourceVersion));
      if (outcome.ok) {
        await this.backend.reached(outcome.revision, FEED_WAIT_MS);
        return { ...current, metadata: { ...current.metadata, resourceVersion: String(outcome.revision) } };
      }
      await this.sawRace(name, outcome, attempt);
    }
  }

  /** Another writer won the compare-and-swap: wait to see its change, then the caller decides again. */
  private async sawRace(name: string, outcome: WriteOutcome, attempt: number): Promise<void> {
    if (!outcome.ok && outcome.gone) throw this.notFound(name);
    if (attempt >= MAX_ATTEMPTS || !(await this.backend.reached(outcome.revision, FEED_WAIT_MS))) throw this.modified(name);
  }

  /** The written object as acknowledged: durable, and (unless the feed is slow) visible in memory. */
  private async settled(stamped: T, revision: number): Promise<T> {
    await this.backend.reached(revision, FEED_WAIT_MS);
    return { ...stamped, metadata: { ...stamped.metadata, resourceVersion: String(revision) } };
  }

  /** Subscribes to every change from now on (for controllers such as the health prober). */
  subscribe(listener: StoreListener<T>): Watch {
    this.listeners.add(listener);
    return { stop: () => this.listeners.delete(listener) };
  }

  /**
   * Events after `fromRevision` followed by live ones. With no revision, the current objects are
   * replayed as ADDED first (Kubernetes' "start at most recent" semantics). `ended` runs when the
   * store can no longer continue this watch (its feed started over): the client must re-list.
   */
  watch(fromRevision: number | undefined, listener: StoreListener<T>, ended?: () => void): Watch {
    const revision = this.backend.revision;
    if (fromRevision === undefined) {
      for (const object of this.list()) {
        listener({ type: "ADDED", object, revision: Number(object.metadata.resourceVersion) });
      }
    } else if (fromRevision !== revision) {
      // Older than the history kept, or from a future this store has not seen (a restart, a lagging replica).
      if (fromRevision < this.historyStart || fromRevision > revision) {
        throw gone(`too old resource version: ${fromRevision} (${revision})`);
      }
      for (const event of this.history) if (event.revision > fromRevision) listener(event);
    }
    const subscription = this.subscribe(listener);
    if (!ended) return subscription;
    this.clientWatches.add(ended);
    return {
      stop: () => {
        this.clientWatches.delete(ended);
        subscription.stop();
      },
    };
  }

  private stamp(object: T, fixed: { uid: string; generation: number; creationTimestamp: string }): T {
    return { ...object, metadata: { ...object.metadata, ...fixed, resourceVersion: "" } };
  }

  private apply(event: StoreEvent<T>): void {
    if (event.type === "DELETED") this.objects.delete(event.object.metadata.name);
    else this.objects.set(event.object.metadata.name, event.object);
    this.publish(event);
  }

  /**
   * The feed lost its place and read everything again: subscribers learn the differences as
   * events, history starts over, and client watches end so their clients re-list.
   */
  private reset(next: T[], revision: number): void {
    const seen = new Set<string>();
    const events: StoreEvent<T>[] = [];
    for (const object of next) {
      const name = object.metadata.name;
      seen.add(name);
      const before = this.objects.get(name);
      if (!before) events.push({ type: "ADDED", object, revision });
      else if (before.metadata.resourceVersion !== object.metadata.resourceVersion) events.push({ type: "MODIFIED", object, revision });
    }
    for (const [name, object] of this.objects) {
      if (!seen.has(name)) events.push({ type: "DELETED", object: { ...object, metadata: { ...object.metadata, resourceVersion: String(revision) } }, revision });
    }
    for (const end of [...this.clientWatches]) end();
    this.clientWatches.clear();
    for (const event of events) this.apply(event);
    this.history.length = 0;
    this.historyStart = revision;
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

  private modified(name: string): ApiError {
    return conflict(this.groupResource, name, "the object has been modified; please apply your changes to the latest version and try again");
  }

  private notFound(name: string): ApiError {
    return notFound(this.groupResource, name);
  }

  private get groupResource(): GroupResource {
    return { group: GROUP, resource: this.resource };
  }
}
