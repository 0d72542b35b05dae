/**
 * Objects and secrets in etcd, shared by every kpass replica. Layout under the prefix:
 *
 *   <prefix>registry/<resource>/<name>   an object: sealed JSON without its resourceVersion
 *   <prefix>secrets/<name>               a CA, a key, the token-signing key: sealed
 *   <prefix>registry/.sync               written to learn that the watch has caught up (below)
 *   <prefix>leader/<role>                held with a lease by the replica that runs <role>
 *
 * resourceVersion is etcd's revision: an object's is its mod_revision, a list's the revision its
 * memory has reached. One watch on `<prefix>registry/` keeps every resource's memory; writes are
 * transactions comparing mod_revision, acknowledged once the watch has brought them back.
 *
 * Knowing that the watch has delivered everything up to revision R is what lets a replica serve a
 * resourceVersion another replica handed out. etcd's revisions count every write to it, not only
 * kpass's, so waiting for R may never end by itself: the feed then writes `registry/.sync` and waits
 * for that write instead (it comes after R, and the watch delivers in order).
 */
import type { StoredObject, StoreEvent } from "../core/object.ts";
import { serviceUnavailable } from "../core/status.ts";
import { logger } from "../core/log.ts";
import type { Backend, ObjectFeed, StoreHealth, WriteOutcome } from "./backend.ts";
import { EtcdCompactedError, EtcdUnavailableError, type EtcdClient, type KeyValue, type WatchEvent } from "./etcd-client.ts";
import type { KeyRing } from "./encryption.ts";
import { checkSecretName, type SecretStore } from "./secrets.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** How long a wait lets the watch bring a revision by itself before it writes the sync key. */
const NATURAL_WAIT_MS = 50;
/** How often a replica whose write etcd did not answer tries again, to stop saying so. */
const RECHECK_MS = 2_000;
/** How often the feed checks that its watch still delivers (see checkLiveness). */
const LIVENESS_MS = 5_000;
const WATCH_STALL_MS = 5_000;

interface Waiter {
  revision: number;
  resolve(reached: boolean): void;
  timer: ReturnType<typeof setTimeout>;
}

/** etcd's failure, as a client sees it: a 503, with what kpass could not reach. */
function unavailable(error: unknown): Error {
  if (error instanceof EtcdUnavailableError) return serviceUnavailable(`etcd is unavailable: ${error.message}`);
  return error as Error;
}

/** The one watch of a kpass prefix, shared by the resources' backends. */
export class EtcdFeed {
  private readonly backends = new Map<string, EtcdBackend>();
  private delivered = 0;
  private waiters: Waiter[] = [];
  private watch?: { stop(): void };
  private connected = true;
  private downSince?: number;
  private lastError?: string;
  private syncing?: Promise<number>;
  private writeFailure?: { at: number; message: string };
  private recheck?: ReturnType<typeof setInterval>;
  private liveness?: ReturnType<typeof setInterval>;
  private checking = false;

  constructor(
    readonly client: EtcdClient,
    readonly prefix: string,
    readonly keys: KeyRing,
  ) {}

  get registry(): string {
    return `${this.prefix}registry/`;
  }

  get revision(): number {
    return this.delivered;
  }

  backend(resource: string): EtcdBackend {
    const backend = new EtcdBackend(resource, this);
    this.backends.set(resource, backend);
    return backend;
  }

  /** Reads every object at one revision and starts the watch after it. */
  async start(): Promise<void> {
    const snapshot = await this.snapshot();
    for (const [resource, backend] of this.backends) backend.loaded = snapshot.objects.get(resource) ?? [];
    this.advance(snapshot.revision);
    this.follow(snapshot.revision + 1);
    this.liveness = setInterval(() => void this.checkLiveness(), LIVENESS_MS);
  }

  /**
   * A watch can stall without its connection closing (a frozen etcd, a half-open TCP path): then
   * revocations made through other replicas would stop arriving here. So the feed writes the sync
   * key now and then and expects its own write back: a write that fails marks the store degraded;
   * a write the watch does not bring back in time restarts the watch where it stopped.
   */
  private async checkLiveness(): Promise<void> {
    if (this.checking || !this.connected) return;
    this.checking = true;
    try {
      let revision: number;
      try {
        revision = await this.sync();
        this.succeeded();
      } catch (error) {
        this.failed(error);
        return;
      }
      if (await this.waitFor(revision, WATCH_STALL_MS)) return;
      logger.warn(`the etcd watch did not bring revision ${revision} within ${WATCH_STALL_MS} ms: watching again from ${this.delivered + 1}`);
      this.watch?.stop();
      this.follow(this.delivered + 1);
    } finally {
      this.checking = false;
    }
  }

  stop(): void {
    if (this.liveness) clearInterval(this.liveness);
    this.watch?.stop();
    if (this.recheck) clearInterval(this.recheck);
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters = [];
  }

  /**
   * A write etcd did not answer: degraded until one succeeds. The watch alone does not notice an
   * etcd that stopped answering without closing its connection.
   */
  failed(error: unknown): void {
    if (!(error instanceof EtcdUnavailableError) || this.writeFailure) return;
    this.writeFailure = { at: Date.now(), message: error.message };
    // Without writes nobody would learn that etcd answers again: try the sync key until it does.
    this.recheck = setInterval(() => {
      this.sync().then(
        () => this.succeeded(),
        () => {},
      );
    }, RECHECK_MS);
  }

  succeeded(): void {
    this.writeFailure = undefined;
    if (this.recheck) clearInterval(this.recheck);
    this.recheck = undefined;
  }

  health(): StoreHealth {
    if (this.connected && this.writeFailure) return { writable: false, detail: `etcd did not answer a write at ${new Date(this.writeFailure.at).toISOString()} (${this.writeFailure.message}): reads served from memory, writes refused` };
    if (this.connected) return { writable: true };
    const since = this.downSince ? ` since ${new Date(this.downSince).toISOString()}` : "";
    return { writable: false, detail: `etcd unreachable${since}${this.lastError ? ` (${this.lastError})` : ""}: reads served from memory, writes refused` };
  }

  private async snapshot(): Promise<{ objects: Map<string, StoredObject[]>; revision: number }> {
    const objects = new Map<string, StoredObject[]>();
    const { kvs, revision } = await this.client.range(this.registry, { prefix: true });
    for (const kv of kvs) {
      const located = this.locate(kv.key);
      if (!located) continue;
      const object = this.decode(kv, located.resource, located.name);
      if (!object) continue;
      const list = objects.get(located.resource) ?? [];
      list.push(object);
      objects.set(located.resource, list);
    }
    return { objects, revision };
  }

  private follow(fromRevision: number): void {
    this.watch = this.client.watch(this.registry, fromRevision, {
      events: (events, revision) => {
        for (const event of events) this.deliver(event);
        this.advance(revision);
      },
      compacted: (compactRevision) => {
        logger.warn(`etcd compacted past revision ${this.delivered} (now ${compactRevision}): reading every object again`);
        void this.restart();
      },
      connection: (up, error) => {
        if (up === this.connected) return;
        this.connected = up;
        this.downSince = up ? undefined : Date.now();
        this.lastError = error?.message;
        if (up) logger.info("kpass: etcd reachable again; the watch resumes where it stopped");
        else logger.warn(`etcd unreachable (${error?.message ?? "connection lost"}): reads are served from memory, writes refused until it is back`);
      },
    });
  }

  /** After a compaction: everything read again, each resource's memory reset to it, the watch restarted. */
  private async restart(): Promise<void> {
    this.watch?.stop();
    for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
      try {
        const snapshot = await this.snapshot();
        for (const [resource, backend] of this.backends) backend.reset(snapshot.objects.get(resource) ?? [], snapshot.revision);
        this.advance(snapshot.revision);
        this.follow(snapshot.revision + 1);
        return;
      } catch (error) {
        logger.warn(`reading etcd again failed: ${(error as Error).message}`);
        await Bun.sleep(delay);
      }
    }
  }

  private deliver(event: WatchEvent): void {
    const located = this.locate(event.kv.key);
    if (!located) return;
    const backend = this.backends.get(located.resource);
    if (!backend) return;
    if (event.type === "PUT") {
      const object = this.decode(event.kv, located.resource, located.name);
      if (!object) return;
      const created = event.kv.createRevision === event.kv.modRevision;
      backend.deliver({ type: created ? "ADDED" : "MODIFIED", object, revision: event.kv.modRevision });
      return;
    }
    // A deletion carries the object as it was (prev_kv); without it, memory still knows it.
    const before = event.prevKv ? this.decode(event.prevKv, located.resource, located.name) : backend.known(located.name);
    if (!before) return;
    backend.deliver({ type: "DELETED", object: { ...before, metadata: { ...before.metadata, resourceVersion: String(event.kv.modRevision) } }, revision: event.kv.modRevision });
  }

  private advance(revision: number): void {
    if (revision <= this.delivered) return;
    this.delivered = revision;
    const still: Waiter[] = [];
    for (const waiter of this.waiters) {
      if (waiter.revision <= revision) {
        clearTimeout(waiter.timer);
        waiter.resolve(true);
      } else still.push(waiter);
    }
    this.waiters = still;
  }

  /** Resolves once the watch has delivered `revision` — writing the sync key if the wait drags on. */
  async reached(revision: number, timeoutMs: number): Promise<boolean> {
    if (revision <= this.delivered) return true;
    const deadline = Date.now() + timeoutMs;
    if (await this.waitFor(revision, Math.min(NATURAL_WAIT_MS, timeoutMs))) return true;
    if (!this.connected) return false;
    let synced: number;
    try {
      synced = await this.sync();
    } catch {
      return false;
    }
    return this.waitFor(Math.max(revision, synced), Math.max(0, deadline - Date.now()));
  }

  private waitFor(revision: number, timeoutMs: number): Promise<boolean> {
    if (revision <= this.delivered) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        revision,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** One write of the sync key at a time serves every waiter that asked meanwhile. */
  private sync(): Promise<number> {
    this.syncing ??= this.client
      .put(`${this.registry}.sync`, encoder.encode(String(Date.now())))
      .then((r) => r.revision)
      .finally(() => {
        this.syncing = undefined;
      });
    return this.syncing;
  }

  key(resource: string, name: string): string {
    return `${this.registry}${resource}/${name}`;
  }

  private locate(key: string): { resource: string; name: string } | undefined {
    if (!key.startsWith(this.registry)) return undefined;
    const rest = key.slice(this.registry.length);
    const slash = rest.indexOf("/");
    if (slash <= 0) return undefined;
    return { resource: rest.slice(0, slash), name: rest.slice(slash + 1) };
  }

  encode(resource: string, object: StoredObject): Uint8Array {
    const { resourceVersion: _rv, ...metadata } = object.metadata;
    return this.keys.seal(encoder.encode(JSON.stringify({ ...object, metadata })), `${resource}/${object.metadata.name}`);
  }

  /** A stored value as an object, or undefined (logged) when it cannot be one: one bad value hides nothing else. */
  decode(kv: KeyValue, resource: string, name: string): StoredObject | undefined {
    try {
      const object = JSON.parse(decoder.decode(this.keys.open(kv.value, `${resource}/${name}`).plain)) as StoredObject;
      if (!object || typeof object !== "object" || object.metadata?.name !== name) throw new Error("not an object named like its key");
      return { ...object, metadata: { ...object.metadata, resourceVersion: String(kv.modRevision) } };
    } catch (error) {
      logger.error(`etcd key ${kv.key}: ${(error as Error).message}; not loaded`);
      return undefined;
    }
  }
}

/** One resource's objects in etcd, fed by the shared watch. */
export class EtcdBackend implements Backend {
  private feed?: ObjectFeed;
  /** The objects of the snapshot the feed started from, handed to the store once. */
  loaded: StoredObject[] = [];
  private readonly current = new Map<string, StoredObject>();

  constructor(
    readonly resource: string,
    private readonly shared: EtcdFeed,
  ) {}

  attach(feed: ObjectFeed): void {
    this.feed = feed;
  }

  async start(): Promise<StoredObject[]> {
    for (const object of this.loaded) this.current.set(object.metadata.name, object);
    const objects = this.loaded;
    this.loaded = [];
    return objects;
  }

  get revision(): number {
    return this.shared.revision;
  }

  reached(revision: number, timeoutMs: number): Promise<boolean> {
    return this.shared.reached(revision, timeoutMs);
  }

  known(name: string): StoredObject | undefined {
    return this.current.get(name);
  }

  deliver(event: StoreEvent): void {
    if (event.type === "DELETED") this.current.delete(event.object.metadata.name);
    else this.current.set(event.object.metadata.name, event.object);
    this.feed?.apply(event);
  }

  reset(objects: StoredObject[], revision: number): void {
    this.current.clear();
    for (const object of objects) this.current.set(object.metadata.name, object);
    this.feed?.reset(objects, revision);
  }

  /** One write to etcd, its failure a 503 (and the feed's health degraded until a write succeeds). */
  private async write<R>(step: () => Promise<R>): Promise<R> {
    try {
      const result = await step();
      this.shared.succeeded();
      return result;
    } catch (error) {
      this.shared.failed(error);
      throw unavailable(error);
    }
  }

  async create(object: StoredObject): Promise<WriteOutcome> {
    const result = await this.write(() => this.shared.client.create(this.shared.key(this.resource, object.metadata.name), this.shared.encode(this.resource, object)));
    return result.ok ? { ok: true, revision: result.revision } : { ok: false, revision: result.current.modRevision };
  }

  async update(object: StoredObject, expected: number): Promise<WriteOutcome> {
    const result = await this.write(() => this.shared.client.update(this.shared.key(this.resource, object.metadata.name), this.shared.encode(this.resource, object), expected));
    if (result.ok) return { ok: true, revision: result.revision };
    return result.current ? { ok: false, revision: result.current.modRevision } : { ok: false, revision: result.revision, gone: true };
  }

  async remove(current: StoredObject, expected: number): Promise<WriteOutcome> {
    const result = await this.write(() => this.shared.client.remove(this.shared.key(this.resource, current.metadata.name), expected));
    if (result.ok) return { ok: true, revision: result.revision };
    return result.current ? { ok: false, revision: result.current.modRevision } : { ok: false, revision: result.revision, gone: true };
  }

  async read(name: string): Promise<StoredObject | undefined> {
    const { kvs } = await this.shared.client.range(this.shared.key(this.resource, name));
    const kv = kvs[0];
    return kv ? this.shared.decode(kv, this.resource, name) : undefined;
  }

  async listAt(revision: number): Promise<StoredObject[] | undefined> {
    const directory = `${this.shared.registry}${this.resource}/`;
    try {
      const { kvs } = await this.shared.client.range(directory, { prefix: true, revision });
      return kvs.flatMap((kv) => this.shared.decode({ ...kv }, this.resource, kv.key.slice(directory.length)) ?? []);
    } catch (error) {
      if (error instanceof EtcdCompactedError) return undefined;
      throw unavailable(error);
    }
  }

  health(): StoreHealth {
    return this.shared.health();
  }

  stop(): void {
    this.shared.stop();
  }
}

/** The secrets every replica shares, sealed, under `<prefix>secrets/`. */
export class EtcdSecrets implements SecretStore {
  constructor(
    private readonly client: EtcdClient,
    private readonly prefix: string,
    private readonly keys: KeyRing,
  ) {}

  private key(name: string): string {
    return `${this.prefix}secrets/${checkSecretName(name)}`;
  }

  async read(name: string): Promise<string | undefined> {
    const { kvs } = await this.client.range(this.key(name));
    return kvs[0] ? decoder.decode(this.keys.open(kvs[0].value, `secrets/${name}`).plain) : undefined;
  }

  async createIfAbsent(name: string, value: string): Promise<string> {
    const result = await this.client.create(this.key(name), this.keys.seal(encoder.encode(value), `secrets/${name}`));
    return result.ok ? value : decoder.decode(this.keys.open(result.current.value, `secrets/${name}`).plain);
  }

  async write(name: string, value: string): Promise<void> {
    await this.client.put(this.key(name), this.keys.seal(encoder.encode(value), `secrets/${name}`));
  }
}
