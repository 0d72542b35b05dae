/** The etcd client against a real etcd (test/harness/etcd.ts), never the machine's own service. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EtcdClient, EtcdCompactedError, EtcdUnavailableError, type WatchEvent } from "../../src/store/etcd-client.ts";
import { etcdAvailable, startEtcd, type EtcdProcess } from "../harness/etcd.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A port nothing listens on: bound by the kernel's choice, then closed. */
function deadEndpoint(): string {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return `http://127.0.0.1:${port}`;
}

async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(20);
  }
}

describe.skipIf(!etcdAvailable())("EtcdClient", () => {
  let etcd: EtcdProcess;
  let client: EtcdClient;

  beforeAll(async () => {
    etcd = await startEtcd({ progressNotifyIntervalMs: 500 });
    client = new EtcdClient({ endpoints: [etcd.endpoint], requestTimeoutMs: 2000 });
  });
  afterAll(async () => {
    await etcd.stop();
  });

  test("put, range, prefix, limit and reads at a revision", async () => {
    const first = await client.put("/t/range/a", bytes("1"));
    await client.put("/t/range/b", bytes("2"));
    await client.put("/t/range/c", bytes("3"));
    await client.put("/t/rangeX", bytes("outside"));
    const one = await client.range("/t/range/a");
    expect(one.kvs.map((kv) => [kv.key, text(kv.value), kv.version])).toEqual([["/t/range/a", "1", 1]]);
    expect(one.kvs[0]!.createRevision).toBe(first.revision);
    const all = await client.range("/t/range/", { prefix: true });
    expect(all.kvs.map((kv) => kv.key)).toEqual(["/t/range/a", "/t/range/b", "/t/range/c"]);
    expect(all.count).toBe(3);
    const limited = await client.range("/t/range/", { prefix: true, limit: 2 });
    expect([limited.kvs.length, limited.more, limited.count]).toEqual([2, true, 3]);
    await client.put("/t/range/a", bytes("changed"));
    const old = await client.range("/t/range/a", { revision: first.revision });
    expect(text(old.kvs[0]!.value)).toBe("1");
    expect(await client.revision()).toBeGreaterThan(first.revision);
    expect((await client.range("/t/none")).kvs).toEqual([]);
  });

  test("create fails on an existing key and names it", async () => {
    const made = await client.create("/t/create", bytes("a"));
    expect(made.ok).toBe(true);
    const again = await client.create("/t/create", bytes("b"));
    if (again.ok) throw new Error("second create succeeded");
    expect(text(again.current.value)).toBe("a");
    expect(again.current.modRevision).toBe(made.revision);
  });

  test("update and remove are compare-and-swap on mod_revision", async () => {
    const { revision } = await client.put("/t/cas", bytes("0"));
    const racing = await Promise.all([client.update("/t/cas", bytes("x"), revision), client.update("/t/cas", bytes("y"), revision)]);
    expect(racing.filter((r) => r.ok).length).toBe(1);
    const loser = racing.find((r) => !r.ok)!;
    const winner = racing.find((r) => r.ok)!;
    if (loser.ok) throw new Error("unreachable");
    expect(loser.current?.modRevision).toBe(winner.revision);
    const stale = await client.remove("/t/cas", revision);
    expect(stale.ok).toBe(false);
    expect((await client.remove("/t/cas", winner.revision)).ok).toBe(true);
    const gone = await client.update("/t/cas", bytes("z"), winner.revision);
    expect(gone).toEqual({ ok: false, revision: gone.revision });
  });

  test("a watch from a revision delivers exactly the events after it, in order", async () => {
    const start = await client.put("/t/watch1/a", bytes("1"));
    await client.put("/t/watch1/b", bytes("2"));
    await client.remove("/t/watch1/a", start.revision);
    const seen: WatchEvent[] = [];
    const watch = client.watch("/t/watch1/", start.revision + 1, { events: (events) => seen.push(...events), compacted: () => {} });
    await until(() => seen.length >= 2);
    await client.put("/t/watch1/c", bytes("3"));
    await until(() => seen.length >= 3);
    watch.stop();
    expect(seen.map((e) => [e.type, e.kv.key])).toEqual([
      ["PUT", "/t/watch1/b"],
      ["DELETE", "/t/watch1/a"],
      ["PUT", "/t/watch1/c"],
    ]);
    expect(text(seen[1]!.prevKv!.value)).toBe("1");
  });

  test("a watch survives etcd going down and coming back, losing and repeating nothing", async () => {
    const from = await client.revision();
    const seen: string[] = [];
    const states: boolean[] = [];
    const watch = client.watch("/t/watch2/", from + 1, {
      events: (events) => seen.push(...events.map((e) => text(e.kv.value))),
      compacted: () => {},
      connection: (up) => states.push(up),
    });
    await until(() => states.includes(true));
    await client.put("/t/watch2/k", bytes("before"));
    await until(() => seen.length === 1);
    await etcd.kill();
    await until(() => states.at(-1) === false);
    await Bun.sleep(300);
    await etcd.restart();
    for (let i = 0; i < 5; i++) await client.put("/t/watch2/k", bytes(`after-${i}`));
    await until(() => seen.length === 6);
    await Bun.sleep(300);
    watch.stop();
    expect(seen).toEqual(["before", "after-0", "after-1", "after-2", "after-3", "after-4"]);
    expect(states.slice(0, 3)).toEqual([true, false, true]);
  });

  test("progress notifications advance the revision without events", async () => {
    await client.put("/t/other", bytes("x"));
    const current = await client.revision();
    const progress: number[] = [];
    const watch = client.watch("/t/quiet/", current + 1, { events: (events, revision) => events.length === 0 && progress.push(revision), compacted: () => {} });
    await until(() => progress.length > 0, 5000);
    watch.stop();
    expect(progress[0]).toBe(current);
  });

  test("a watch from a compacted revision reports compacted() and stops", async () => {
    const old = await client.put("/t/compact", bytes("1"));
    const latest = await client.put("/t/compact", bytes("2"));
    const response = await fetch(`${etcd.endpoint}/v3/kv/compaction`, { method: "POST", body: JSON.stringify({ revision: String(latest.revision) }) });
    expect(response.status).toBe(200);
    let compactedAt = 0;
    const watch = client.watch("/t/compact", old.revision, { events: () => {}, compacted: (revision) => (compactedAt = revision) });
    await until(() => compactedAt > 0);
    watch.stop();
    expect(compactedAt).toBe(latest.revision);
    await expect(client.range("/t/compact", { revision: old.revision })).rejects.toBeInstanceOf(EtcdCompactedError);
  });

  test("leases: grant, keep alive, revoke deletes the leased key", async () => {
    const lease = await client.leaseGrant(30);
    expect(lease).toMatch(/^[0-9]+$/);
    await client.put("/t/leased", bytes("x"), { lease });
    expect((await client.range("/t/leased")).kvs[0]!.lease).toBe(lease);
    expect(await client.leaseKeepAlive(lease)).toBe(30);
    await client.leaseRevoke(lease);
    expect((await client.range("/t/leased")).kvs).toEqual([]);
    expect(await client.leaseKeepAlive(lease)).toBe(0);
    await client.leaseRevoke(lease);
  });

  test("every endpoint down: EtcdUnavailableError, within the timeout", async () => {
    const down = new EtcdClient({ endpoints: [deadEndpoint(), deadEndpoint()], requestTimeoutMs: 500 });
    const began = Date.now();
    await expect(down.range("/t/x")).rejects.toBeInstanceOf(EtcdUnavailableError);
    // A listener that accepts and never answers: the timeout, not a refusal, ends it.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const hanging = new EtcdClient({ endpoints: [`http://127.0.0.1:${silent.port}`], requestTimeoutMs: 500 });
      await expect(hanging.put("/t/x", bytes("x"))).rejects.toBeInstanceOf(EtcdUnavailableError);
      expect(Date.now() - began).toBeLessThan(3000);
    } finally {
      silent.stop(true);
    }
  });

  test("failover: the first endpoint is dead, the second answers", async () => {
    const failover = new EtcdClient({ endpoints: [deadEndpoint(), etcd.endpoint], requestTimeoutMs: 1000 });
    await failover.put("/t/failover", bytes("ok"));
    expect(text((await failover.range("/t/failover")).kvs[0]!.value)).toBe("ok");
    const seen: string[] = [];
    const watch = failover.watch("/t/failover", 0, { events: (events) => seen.push(...events.map((e) => text(e.kv.value))), compacted: () => {} });
    await Bun.sleep(300);
    await failover.put("/t/failover", bytes("again"));
    await until(() => seen.length === 1);
    watch.stop();
    expect(seen).toEqual(["again"]);
  });
});
