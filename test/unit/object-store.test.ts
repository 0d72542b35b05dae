import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FilePersistence } from "../../src/store/file-persistence.ts";
import { ObjectStore } from "../../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../../src/store/local-backend.ts";
import type { ObjectMeta, StoreEvent, StoredObject } from "../../src/core/object.ts";

interface Thing extends StoredObject {
  spec?: { size: number; tags?: string[] };
  status?: { phase: string };
}

const sandboxes: string[] = [];
afterAll(() => {
  for (const dir of sandboxes) rmSync(dir, { recursive: true, force: true });
});

function sandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), "kpass-object-store-"));
  sandboxes.push(dir);
  return dir;
}

function thing(name: string, size = 1, extra: Partial<Thing> = {}): Thing {
  // Callers hand the store bare metadata; everything else in ObjectMeta is the store's to fill in.
  return { apiVersion: "test.kpass.dev/v1", kind: "Thing", metadata: { name } as ObjectMeta, spec: { size }, ...extra };
}

/**
 * Keeps objects in memory so that tests needing thousands of writes (the watch window) do not
 * pay two fsyncs each, and so a failing disk can be simulated.
 */
class MemoryPersistence extends FilePersistence {
  readonly saved = new Map<string, StoredObject>();
  deletedRevision = 0;
  failWrites = false;

  constructor() {
    super("/nonexistent/kpass-memory-persistence");
  }

  override async loadAll(resource: string): Promise<StoredObject[]> {
    return [...this.saved.entries()].filter(([key]) => key.startsWith(`${resource}/`)).map(([, object]) => structuredClone(object));
  }

  override async write(resource: string, object: StoredObject): Promise<void> {
    if (this.failWrites) throw new Error("disk full");
    this.saved.set(`${resource}/${object.metadata.name}`, structuredClone(object));
  }

  override async remove(resource: string, name: string, revision: number): Promise<void> {
    this.deletedRevision = revision;
    this.saved.delete(`${resource}/${name}`);
  }

  override async lastDeletedRevision(): Promise<number> {
    return this.deletedRevision;
  }
}

async function memoryStore(resource = "things", clock = new RevisionClock(), persistence = new MemoryPersistence()) {
  const store = new ObjectStore<Thing>(resource, new LocalBackend(resource, clock, persistence));
  await store.load();
  return { store, clock, persistence };
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: unknown; reason?: unknown; message?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: unknown; reason?: unknown };
  }
  throw new Error("expected the promise to reject");
}

function thrown(fn: () => unknown): { code?: unknown; reason?: unknown } {
  try {
    fn();
  } catch (error) {
    return error as { code?: unknown; reason?: unknown };
  }
  throw new Error("expected a throw");
}

function record(store: ObjectStore<Thing>, fromRevision?: number) {
  const events: StoreEvent<Thing>[] = [];
  const watch = store.watch(fromRevision, (event) => events.push(event));
  return { events, watch };
}

const summary = (events: StoreEvent<Thing>[]) => events.map((e) => `${e.type} ${e.object.metadata.name} ${e.revision}`);
const rv = (object: StoredObject) => Number(object.metadata.resourceVersion);
const specChanged = (a: Thing, b: Thing) => JSON.stringify(a.spec) !== JSON.stringify(b.spec);

describe("RevisionClock", () => {
  test("counts up from the highest revision it was shown and never goes back", () => {
    const clock = new RevisionClock();
    expect(clock.next()).toBe(1);
    clock.advanceTo(10);
    expect(clock.value).toBe(10);
    clock.advanceTo(3);
    expect(clock.value).toBe(10);
    expect(clock.next()).toBe(11);
    expect(clock.value).toBe(11);
  });
});

describe("create", () => {
  test("assigns uid, resourceVersion, generation 1 and a whole-second creationTimestamp, overriding what the caller sent", async () => {
    const { store } = await memoryStore();
    const notBefore = Math.floor(Date.now() / 1000) * 1000;
    const sent = thing("a");
    sent.metadata = { name: "a", uid: "client-uid", generation: 7, creationTimestamp: "2001-01-01T00:00:00Z" } as ObjectMeta;
    const a = await store.create(sent);
    const b = await store.create(thing("b"));
    const notAfter = Date.now();

    expect(a.metadata.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(b.metadata.uid).not.toBe(a.metadata.uid);
    expect(a.metadata.generation).toBe(1);
    expect(a.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const created = Date.parse(a.metadata.creationTimestamp);
    expect(created).toBeGreaterThanOrEqual(notBefore);
    expect(created).toBeLessThanOrEqual(notAfter);
    // resourceVersion is an opaque string to clients but kpass promises it parses and increases.
    expect(a.metadata.resourceVersion).toMatch(/^[1-9]\d*$/);
    expect(rv(b)).toBeGreaterThan(rv(a));
    expect(store.get("a")).toEqual(a);
    expect(store.revision).toBe(rv(b));
  });

  test("a duplicate name is 409 AlreadyExists and leaves the original and the event stream untouched", async () => {
    const { store } = await memoryStore();
    const original = await store.create(thing("a", 1));
    const { events } = record(store, store.revision);
    const error = await rejection(store.create(thing("a", 2)));
    expect(error.code).toBe(409);
    expect(error.reason).toBe("AlreadyExists");
    expect(store.get("a")).toEqual(original);
    expect(events).toEqual([]);
  });

  test("a write the disk refuses is neither applied nor announced, and later writes still go through", async () => {
    const { store, persistence } = await memoryStore();
    const { events } = record(store, store.revision);
    persistence.failWrites = true;
    await expect(store.create(thing("a"))).rejects.toThrow("disk full");
    expect(store.get("a")).toBeUndefined();
    expect(events).toEqual([]);
    persistence.failWrites = false;
    const a = await store.create(thing("a"));
    expect(summary(events)).toEqual([`ADDED a ${rv(a)}`]);
  });
});

describe("update", () => {
  test("stores the change under a new resourceVersion, keeping uid and creationTimestamp", async () => {
    const { store } = await memoryStore();
    const before = await store.create(thing("a", 1));
    const { events } = record(store, store.revision);
    const after = await store.update("a", (current) => ({ ...current, spec: { size: 2 } }));
    expect(after.spec).toEqual({ size: 2 });
    expect(rv(after)).toBeGreaterThan(rv(before));
    expect(after.metadata.uid).toBe(before.metadata.uid);
    expect(after.metadata.creationTimestamp).toBe(before.metadata.creationTimestamp);
    expect(store.get("a")).toEqual(after);
    expect(summary(events)).toEqual([`MODIFIED a ${rv(after)}`]);
  });

  test("uid and creationTimestamp cannot be changed by an update", async () => {
    const { store } = await memoryStore();
    const before = await store.create(thing("a"));
    // Kubernetes answers 422 (field is immutable); either refusing or ignoring keeps the invariant.
    await store
      .update("a", (current) => ({ ...current, metadata: { ...current.metadata, uid: "forged", creationTimestamp: "2001-01-01T00:00:00Z" } }))
      .catch(() => undefined);
    expect(store.get("a")!.metadata.uid).toBe(before.metadata.uid);
    expect(store.get("a")!.metadata.creationTimestamp).toBe(before.metadata.creationTimestamp);
  });

  test("a stale resourceVersion is 409 Conflict and changes nothing", async () => {
    const { store } = await memoryStore();
    const first = await store.create(thing("a", 1));
    const second = await store.update("a", (current) => ({ ...current, spec: { size: 2 } }));
    const { events } = record(store, store.revision);
    const error = await rejection(
      store.update("a", (current) => ({ ...current, metadata: { ...current.metadata, resourceVersion: first.metadata.resourceVersion }, spec: { size: 3 } })),
    );
    expect(error.code).toBe(409);
    expect(error.reason).toBe("Conflict");
    expect(store.get("a")).toEqual(second);
    expect(events).toEqual([]);
  });

  test("of two concurrent writers holding the same read, exactly one wins and the other gets 409 Conflict", async () => {
    const { store } = await memoryStore();
    const read = await store.create(thing("a", 1));
    const write = (size: number) =>
      store.update("a", (current) => ({ ...current, metadata: { ...current.metadata, resourceVersion: read.metadata.resourceVersion }, spec: { size } }));
    const results = await Promise.allSettled([write(2), write(3)]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected"]);
    const loser = (results[1] as PromiseRejectedResult).reason as { code: unknown; reason: unknown };
    expect(loser.code).toBe(409);
    expect(loser.reason).toBe("Conflict");
    expect(store.get("a")!.spec).toEqual({ size: 2 });
  });

  test("a missing object is 404 NotFound", async () => {
    const { store } = await memoryStore();
    const error = await rejection(store.update("ghost", (current) => current));
    expect(error.code).toBe(404);
    expect(error.reason).toBe("NotFound");
  });

  test("a change that throws rejects the update without stalling the writes queued behind it", async () => {
    const { store } = await memoryStore();
    const before = await store.create(thing("a", 1));
    const failing = store.update("a", () => {
      throw new Error("invalid change");
    });
    const next = store.update("a", (current) => ({ ...current, spec: { size: 5 } }));
    await expect(failing).rejects.toThrow("invalid change");
    expect((await next).spec).toEqual({ size: 5 });
    expect(rv(store.get("a")!)).toBe(rv(before) + 1);
  });
});

describe("generation", () => {
  // kube-apiserver's storage layer never decides this: the resource's strategy (PrepareForUpdate)
  // bumps metadata.generation when spec changes. ObjectStore mirrors that split with bumpGeneration,
  // which the REST layer supplies; here the store's half of the contract is pinned.
  test("without a bumpGeneration rule it stays put, whatever the change or the caller's own generation says", async () => {
    const { store } = await memoryStore();
    await store.create(thing("a", 1));
    const after = await store.update("a", (current) => ({ ...current, metadata: { ...current.metadata, generation: 99 }, spec: { size: 2 } }));
    expect(after.metadata.generation).toBe(1);
  });

  test("a spec-comparing rule bumps it once per spec change and not for label, annotation or status changes", async () => {
    const { store } = await memoryStore();
    await store.create(thing("a", 1));
    const bump = { bumpGeneration: specChanged };
    const generation = () => store.get("a")!.metadata.generation;

    await store.update("a", (c) => ({ ...c, spec: { size: 2 } }), bump);
    expect(generation()).toBe(2);
    await store.update("a", (c) => ({ ...c, metadata: { ...c.metadata, labels: { env: "prod" }, annotations: { note: "x" } } }), bump);
    expect(generation()).toBe(2);
    await store.update("a", (c) => ({ ...c, status: { phase: "Ready" } }), bump);
    expect(generation()).toBe(2);
    await store.update("a", (c) => ({ ...c, spec: { size: 2 } }), bump);
    expect(generation()).toBe(2);
    await store.update("a", (c) => ({ ...c, spec: { size: 2, tags: ["x"] } }), bump);
    expect(generation()).toBe(3);
  });

  test("the rule sees the stored object and the proposed one, and a bump adds exactly one whatever generation was proposed", async () => {
    const { store } = await memoryStore();
    const stored = await store.create(thing("a", 1));
    const seen: [Thing, Thing][] = [];
    const after = await store.update("a", (c) => ({ ...c, metadata: { ...c.metadata, generation: 50 }, spec: { size: 9 } }), {
      bumpGeneration: (current, next) => {
        seen.push([current, next]);
        return true;
      },
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]![0]).toEqual(stored);
    expect(seen[0]![1].spec).toEqual({ size: 9 });
    expect(after.metadata.generation).toBe(2);
  });

  test("a rejected update does not consume a generation", async () => {
    const { store } = await memoryStore();
    await store.create(thing("a", 1));
    await rejection(
      store.update("a", (c) => ({ ...c, metadata: { ...c.metadata, resourceVersion: "999" }, spec: { size: 2 } }), { bumpGeneration: () => true }),
    );
    expect(store.get("a")!.metadata.generation).toBe(1);
  });
});

describe("delete", () => {
  test("removes the object and reports it under the deletion's own resourceVersion", async () => {
    const { store } = await memoryStore();
    const a = await store.create(thing("a"));
    await store.create(thing("b"));
    const { events } = record(store, store.revision);
    const deleted = await store.delete("a");
    expect(deleted.metadata.uid).toBe(a.metadata.uid);
    expect(rv(deleted)).toBe(store.revision);
    expect(rv(deleted)).toBeGreaterThan(rv(a));
    expect(store.get("a")).toBeUndefined();
    expect(store.list().map((o) => o.metadata.name)).toEqual(["b"]);
    expect(store.size).toBe(1);
    expect(summary(events)).toEqual([`DELETED a ${rv(deleted)}`]);
    expect(events[0]!.object.metadata.resourceVersion).toBe(deleted.metadata.resourceVersion);

    const again = await rejection(store.delete("a"));
    expect(again.code).toBe(404);
    expect(again.reason).toBe("NotFound");
  });

  test("a uid or resourceVersion precondition that does not match is 409 Conflict and keeps the object", async () => {
    const { store } = await memoryStore();
    const a = await store.create(thing("a"));
    for (const precondition of [{ uid: "someone-else" }, { resourceVersion: String(rv(a) + 100) }]) {
      const error = await rejection(store.delete("a", precondition));
      expect(error.code).toBe(409);
      expect(error.reason).toBe("Conflict");
      expect(store.get("a")).toEqual(a);
    }
    await store.delete("a", { uid: a.metadata.uid, resourceVersion: a.metadata.resourceVersion });
    expect(store.get("a")).toBeUndefined();
  });
});

describe("list", () => {
  test("is ordered by name as etcd keys are, not by insertion", async () => {
    const { store } = await memoryStore();
    const names = ["b", "a0", "a.b", "a-b", "a", "ab", "z9", "z10"];
    for (const name of names) await store.create(thing(name));
    expect(store.list().map((o) => o.metadata.name)).toEqual([...names].sort());
    expect(store.size).toBe(names.length);
  });
});

describe("watch", () => {
  test("without a resourceVersion replays the current objects as ADDED in name order, then goes live", async () => {
    const { store } = await memoryStore();
    const b = await store.create(thing("b"));
    const a = await store.create(thing("a"));
    await store.create(thing("c"));
    await store.delete("c");
    const { events } = record(store);
    expect(summary(events)).toEqual([`ADDED a ${rv(a)}`, `ADDED b ${rv(b)}`]);
    const d = await store.create(thing("d"));
    expect(summary(events).at(-1)).toBe(`ADDED d ${rv(d)}`);
  });

  test("from a resourceVersion replays every later event exactly once and in order, then goes live", async () => {
    const { store } = await memoryStore();
    await store.create(thing("a"));
    const from = (await store.create(thing("b"))).metadata.resourceVersion;
    const m = await store.update("a", (c) => ({ ...c, spec: { size: 2 } }));
    const c = await store.create(thing("c"));
    const del = await store.delete("b");
    const { events } = record(store, Number(from));
    expect(summary(events)).toEqual([`MODIFIED a ${rv(m)}`, `ADDED c ${rv(c)}`, `DELETED b ${rv(del)}`]);
    const live = await store.update("c", (x) => ({ ...x, spec: { size: 3 } }));
    expect(summary(events)).toEqual([`MODIFIED a ${rv(m)}`, `ADDED c ${rv(c)}`, `DELETED b ${rv(del)}`, `MODIFIED c ${rv(live)}`]);
  });

  test("from the current resourceVersion replays nothing and delivers live events", async () => {
    const { store } = await memoryStore();
    await store.create(thing("a"));
    const { events } = record(store, store.revision);
    expect(events).toEqual([]);
    const b = await store.create(thing("b"));
    expect(summary(events)).toEqual([`ADDED b ${rv(b)}`]);
  });

  test("from a resourceVersion this store never reached is 410 Gone", async () => {
    const { store } = await memoryStore();
    await store.create(thing("a"));
    const error = thrown(() => store.watch(store.revision + 1, () => {}));
    expect(error.code).toBe(410);
    expect(error.reason).toBe("Gone");
  });

  test("after a restart, a resourceVersion from before it is 410 Gone and the current one resumes with nothing replayed", async () => {
    const persistence = new MemoryPersistence();
    const { store: before } = await memoryStore("things", new RevisionClock(), persistence);
    const seen = rv(await before.create(thing("a")));
    await before.update("a", (c) => ({ ...c, spec: { size: 2 } }));
    await before.create(thing("b"));

    // The events between `seen` and the restart are no longer in memory to replay.
    const { store: after } = await memoryStore("things", new RevisionClock(), persistence);
    const error = thrown(() => after.watch(seen, () => {}));
    expect(error.code).toBe(410);
    expect(error.reason).toBe("Gone");
    const { events } = record(after, after.revision);
    expect(events).toEqual([]);
    const c = await after.create(thing("c"));
    expect(summary(events)).toEqual([`ADDED c ${rv(c)}`]);
  });

  test("stop() ends delivery to that watcher only", async () => {
    const { store } = await memoryStore();
    const first = record(store, store.revision);
    const second = record(store, store.revision);
    first.watch.stop();
    await store.create(thing("a"));
    expect(first.events).toEqual([]);
    expect(second.events).toHaveLength(1);
  });

  test("a watcher that throws neither fails the write nor starves the others", async () => {
    const { store } = await memoryStore();
    store.watch(store.revision, () => {
      throw new Error("broken watcher");
    });
    const { events } = record(store, store.revision);
    const a = await store.create(thing("a"));
    expect(store.get("a")).toEqual(a);
    expect(summary(events)).toEqual([`ADDED a ${rv(a)}`]);
  });

  test("stores sharing a clock get distinct revisions, and a watch may resume from a revision another store made", async () => {
    const clock = new RevisionClock();
    const persistence = new MemoryPersistence();
    const { store: things } = await memoryStore("things", clock, persistence);
    const { store: others } = await memoryStore("others", clock, persistence);
    const t1 = await things.create(thing("t"));
    const o1 = await others.create(thing("o"));
    const t2 = await things.update("t", (c) => ({ ...c, spec: { size: 2 } }));
    const o2 = await others.update("o", (c) => ({ ...c, spec: { size: 2 } }));
    expect([rv(t1), rv(o1), rv(t2), rv(o2)]).toEqual([1, 2, 3, 4]);
    // A list of things answered at revision 2 (made by others) must be resumable.
    const { events } = record(things, rv(o1));
    expect(summary(events)).toEqual([`MODIFIED t ${rv(t2)}`]);
    expect(things.revision).toBe(4);
  });

  test("keeps a bounded window of history: older revisions are 410 Gone, the oldest kept one replays everything after it", async () => {
    const { store } = await memoryStore();
    const created = rv(await store.create(thing("a", 0)));
    const gone = (revision: number) => {
      try {
        store.watch(revision, () => {}).stop();
        return false;
      } catch (error) {
        expect((error as { code?: unknown }).code).toBe(410);
        expect((error as { reason?: unknown }).reason).toBe("Gone");
        return true;
      }
    };
    // The window's size is private; write until revision 0 falls out of it, within a bound.
    let writes = 0;
    while (!gone(0) && writes < 10_000) {
      await store.update("a", (c) => ({ ...c, spec: { size: c.spec!.size + 1 } }));
      writes++;
    }
    expect(gone(0)).toBe(true);
    const current = store.revision;
    let oldest = 0;
    while (oldest <= current && gone(oldest)) oldest++;
    // Only the oldest event has fallen out, so a watcher that saw it may still resume.
    expect(oldest).toBe(created);

    const { events, watch } = record(store, oldest);
    const expected = Array.from({ length: current - oldest }, (_, i) => oldest + 1 + i);
    expect(events.map((e) => e.revision)).toEqual(expected);
    expect(events.every((e) => e.type === "MODIFIED" && rv(e.object) === e.revision)).toBe(true);
    const live = await store.update("a", (c) => ({ ...c, spec: { size: -1 } }));
    expect(events.at(-1)!.revision).toBe(rv(live));
    watch.stop();
  });
});

describe("file persistence", () => {
  test("objects and the revision survive a restart, so later writes never reuse a revision a watcher saw", async () => {
    const root = join(sandbox(), "objects");
    const first = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await first.load();
    await first.create(thing("b", 1, { status: { phase: "Ready" } }));
    await first.create(thing("a", 1));
    await first.create(thing("c", 1));
    await first.update("a", (c) => ({ ...c, metadata: { ...c.metadata, labels: { env: "prod" } }, spec: { size: 2 } }), { bumpGeneration: specChanged });
    // Deleting last makes the highest revision one that no object file records.
    const deleted = await first.delete("c");
    const before = first.list();

    const second = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await second.load();
    expect(second.list()).toEqual(before);
    expect(second.get("c")).toBeUndefined();
    expect(second.get("a")!.metadata.generation).toBe(2);
    expect(second.revision).toBe(rv(deleted));
    const d = await second.create(thing("d"));
    expect(rv(d)).toBeGreaterThan(rv(deleted));
  });

  test("object files are private to the owner and no temporary files are left behind", async () => {
    const root = join(sandbox(), "objects");
    const store = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await store.load();
    await store.create(thing("a"));
    await store.update("a", (c) => ({ ...c, spec: { size: 2 } }));
    await store.create(thing("b"));
    await store.delete("b");
    const dir = join(root, "things");
    expect(readdirSync(dir)).toEqual(["a.json"]);
    expect(statSync(join(dir, "a.json")).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(join(dir, "a.json"), "utf8"))).toEqual(store.get("a"));
  });

  test("load skips files that are not object files, such as a temporary file a crash left", async () => {
    const root = join(sandbox(), "objects");
    const first = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await first.load();
    const a = await first.create(thing("a"));
    const dir = join(root, "things");
    writeFileSync(join(dir, ".a.json.1234.5678.tmp"), '{"apiVersion": "tru');
    writeFileSync(join(dir, ".half-written.json"), "garbage");
    writeFileSync(join(dir, "README"), "not an object");

    const second = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await second.load();
    expect(second.list()).toEqual([a]);
  });

  // BUG: FilePersistence.loadAll JSON.parses every *.json file without a guard, so one damaged
  // file makes load() reject (and kpass fail to start). Remove `.failing` once that is fixed.
  test("a corrupt object file does not stop load or lose the other objects", async () => {
    const root = join(sandbox(), "objects");
    const first = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await first.load();
    const a = await first.create(thing("a"));
    const z = await first.create(thing("z"));
    writeFileSync(join(root, "things", "m.json"), '{"apiVersion": "test.kpass.dev/v1", "metad');

    const second = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await second.load();
    expect(second.list()).toEqual([a, z]);
  });

  // BUG: names are not checked below the REST layer, and a name starting with "." becomes a
  // dot-file that loadAll skips, so the acknowledged object silently vanishes on restart.
  test('an acknowledged create of ".", ".." or ".hidden" survives a restart (or is refused)', async () => {
    const root = join(sandbox(), "objects");
    const first = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await first.load();
    const accepted: string[] = [];
    for (const name of [".", "..", ".hidden"]) {
      if (await first.create(thing(name)).then(() => true, () => false)) accepted.push(name);
    }
    const second = new ObjectStore<Thing>("things", new LocalBackend("things", new RevisionClock(), new FilePersistence(root)));
    await second.load();
    expect(accepted.filter((name) => !second.get(name))).toEqual([]);
  });
});

describe("object names and the data directory", () => {
  /** Every path in the sandbox outside `objects/things/`, with its content, to detect escapes. */
  function outside(root: string): Record<string, string> {
    const snapshot: Record<string, string> = {};
    for (const entry of readdirSync(root, { recursive: true }) as string[]) {
      if (entry === join("objects", "things") || entry.startsWith(join("objects", "things") + "/")) continue;
      const path = join(root, entry);
      snapshot[entry] = statSync(path).isDirectory() ? "<dir>" : readFileSync(path, "utf8");
    }
    return snapshot;
  }

  async function attempt(name: string): Promise<{ before: Record<string, string>; after: Record<string, string> }> {
    const box = sandbox();
    const root = join(box, "objects");
    const clock = new RevisionClock();
    const persistence = new FilePersistence(root);
    // Another resource's store under the same root, as server.ts sets up clusters and passes.
    const passes = new ObjectStore<Thing>("passes", new LocalBackend("passes", clock, persistence));
    await passes.load();
    await passes.create(thing("admin"));
    const things = new ObjectStore<Thing>("things", new LocalBackend("things", clock, persistence));
    await things.load();
    const before = outside(box);
    await things.create(thing(name)).catch(() => undefined);
    return { before, after: outside(box) };
  }

  // Kubernetes refuses these already in its storage layer (IsValidPathSegmentName); whatever
  // kpass does with them, nothing outside the resource's own directory may appear or change.
  for (const name of ["../x", "sub/x", "/etc/x", "a\\..\\..\\x", "%2e%2e%2fx", "x\u0000y"]) {
    test(`${JSON.stringify(name)} writes nothing outside the resource directory`, async () => {
      const { before, after } = await attempt(name);
      expect(after).toEqual(before);
    });
  }

  // BUG: FilePersistence joins the name into the path and path.join resolves the "..", so these
  // land in the data root, outside it, or on another resource's object (here the admin Pass).
  // "../x" above is only contained by accident: its temp file path goes through a missing "..." directory.
  for (const name of ["a/../../x", "a/../../../x", "a/../../passes/admin"]) {
    test(`${JSON.stringify(name)} writes nothing outside the resource directory`, async () => {
      const { before, after } = await attempt(name);
      expect(after).toEqual(before);
    });
  }
});
