/**
 * An etcd v3 client over etcd's JSON gRPC-gateway, with Bun's fetch: no .proto files to carry,
 * so it works inside `bun build --compile` (bench/RESULTS.md compares it with the etcd3 package).
 * Keys are UTF-8 strings, values bytes; revisions are numbers (they stay far below 2^53), lease
 * IDs decimal strings (they do not).
 */
import { EtcdTransport, type EtcdOptions } from "./etcd-transport.ts";
import { startWatch, type WatchHandlers } from "./etcd-watch.ts";
import { decodeKeyValue, EtcdError, int64, prefixEnd, toBase64, type KeyValue, type WireRange, type WireStreamMessage, type WireTxn } from "./etcd-wire.ts";

export type { EtcdOptions } from "./etcd-transport.ts";
export type { WatchHandlers } from "./etcd-watch.ts";
export { EtcdCompactedError, EtcdError, EtcdUnavailableError, type KeyValue, type WatchEvent } from "./etcd-wire.ts";

export interface RangeResult {
  kvs: KeyValue[];
  revision: number;
  more: boolean;
  count: number;
}

export type CreateResult = { ok: true; revision: number } | { ok: false; current: KeyValue; revision: number };
/** `current` is absent when the key no longer exists. */
export type SwapResult = { ok: true; revision: number } | { ok: false; current?: KeyValue; revision: number };

interface WireHeaderOnly {
  header?: { revision?: string };
}

interface WireLease {
  ID?: string;
  TTL?: string;
}

type Compare = { key: string; target: "CREATE" | "MOD"; result: "EQUAL"; create_revision?: string; mod_revision?: string };

export class EtcdClient {
  private readonly transport: EtcdTransport;

  constructor(options: EtcdOptions) {
    this.transport = new EtcdTransport(options);
  }

  async range(key: string, options: { prefix?: boolean; limit?: number; revision?: number } = {}): Promise<RangeResult> {
    const body: Record<string, unknown> = { key: toBase64(key) };
    if (options.prefix) body.range_end = toBase64(prefixEnd(key));
    if (options.limit !== undefined) body.limit = String(options.limit);
    if (options.revision !== undefined) body.revision = String(options.revision);
    const reply = await this.transport.call<WireRange>("/v3/kv/range", body);
    return { kvs: (reply.kvs ?? []).map(decodeKeyValue), revision: int64(reply.header?.revision), more: reply.more === true, count: int64(reply.count) };
  }

  async put(key: string, value: Uint8Array, options: { lease?: string } = {}): Promise<{ revision: number }> {
    const reply = await this.transport.call<WireHeaderOnly>("/v3/kv/put", putRequest(key, value, options.lease));
    return { revision: int64(reply.header?.revision) };
  }

  /** Puts only when the key does not exist (create_revision == 0); returns the existing kv when it does. */
  async create(key: string, value: Uint8Array, options: { lease?: string } = {}): Promise<CreateResult> {
    const result = await this.txn({ key: toBase64(key), target: "CREATE", result: "EQUAL", create_revision: "0" }, { request_put: putRequest(key, value, options.lease) }, key);
    if (result.ok) return result;
    // The failure branch read the key in the same transaction, so it exists.
    return { ok: false, current: result.current!, revision: result.revision };
  }

  /** Puts only when the key's mod_revision == expected. */
  update(key: string, value: Uint8Array, expectedModRevision: number): Promise<SwapResult> {
    return this.txn(modRevisionIs(key, expectedModRevision), { request_put: putRequest(key, value) }, key);
  }

  /** Deletes only when the key's mod_revision == expected. */
  remove(key: string, expectedModRevision: number): Promise<SwapResult> {
    return this.txn(modRevisionIs(key, expectedModRevision), { request_delete_range: { key: toBase64(key) } }, key);
  }

  /**
   * Watches every key under `prefix` from `fromRevision` (inclusive; 0 = from now). Reconnects by
   * itself (backoff 100 ms .. 2 s, failing over across endpoints) and resumes after the last
   * revision delivered; progress notifications advance the revision (events([], revision)).
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): { stop(): void } {
    return startWatch(this.transport, prefix, fromRevision, handlers);
  }

  async leaseGrant(ttlSeconds: number): Promise<string> {
    const reply = await this.transport.call<WireLease>("/v3/lease/grant", { TTL: String(ttlSeconds) });
    if (!reply.ID) throw new Error("etcd: lease grant reply without an ID");
    return reply.ID;
  }

  /** One keep-alive; the remaining TTL in seconds, 0 when the lease is gone (expired or revoked). */
  async leaseKeepAlive(id: string): Promise<number> {
    // A streaming endpoint: the gateway answers one {"result":..} per request line, then ends.
    const reply = await this.transport.call<WireStreamMessage<WireLease>>("/v3/lease/keepalive", { ID: id });
    if (reply.error) throw new Error(`etcd: lease keepalive: ${reply.error.message ?? "stream error"}`);
    return int64(reply.result?.TTL);
  }

  /** Revokes the lease and deletes its keys; a lease already gone is not an error. */
  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.transport.call<WireHeaderOnly>("/v3/lease/revoke", { ID: id });
    } catch (error) {
      // gRPC NotFound: "etcdserver: requested lease not found" (HTTP 404).
      if (error instanceof EtcdError && error.code === 5) return;
      throw error;
    }
  }

  /** The store's current revision: a count-only read of one key is the cheapest request with a header. */
  async revision(): Promise<number> {
    const reply = await this.transport.call<WireRange>("/v3/kv/range", { key: toBase64("\0"), count_only: true });
    return int64(reply.header?.revision);
  }

  /** A one-compare transaction whose failure branch reads `key`, so a conflict names the current kv. */
  private async txn(compare: Compare, success: Record<string, unknown>, key: string): Promise<SwapResult> {
    const reply = await this.transport.call<WireTxn>("/v3/kv/txn", { compare: [compare], success: [success], failure: [{ request_range: { key: toBase64(key) } }] });
    const revision = int64(reply.header?.revision);
    if (reply.succeeded === true) return { ok: true, revision };
    const current = reply.responses?.[0]?.response_range?.kvs?.[0];
    return current ? { ok: false, current: decodeKeyValue(current), revision } : { ok: false, revision };
  }
}

function putRequest(key: string, value: Uint8Array, lease?: string): Record<string, string> {
  const request: Record<string, string> = { key: toBase64(key), value: toBase64(value) };
  if (lease !== undefined) request.lease = lease;
  return request;
}

function modRevisionIs(key: string, expected: number): Compare {
  return { key: toBase64(key), target: "MOD", result: "EQUAL", mod_revision: String(expected) };
}
