/**
 * What etcd's JSON gRPC-gateway (v3.4) puts on the wire, and turning it into plain values.
 *
 * Measured against etcd 3.4.23 (see bench/RESULTS.md, "etcd client"):
 * - keys and values are base64; int64 fields (revisions, versions, counts, lease IDs, TTLs) are
 *   JSON strings; proto3 defaults are omitted, so a missing field is 0 / false / PUT / empty;
 * - streaming replies (watch, lease keepalive) are one `{"result":{...}}` object per line; a stream
 *   error is `{"error":{"grpc_code":..,"message":..}}`;
 * - a unary error is a non-2xx reply with `{"error":"..","message":"..","code":<gRPC code>}`.
 */

export interface KeyValue {
  key: string;
  value: Uint8Array;
  createRevision: number;
  modRevision: number;
  version: number;
  /** Lease IDs are int64 beyond 2^53, so they stay decimal strings. */
  lease?: string;
}

export interface WatchEvent {
  type: "PUT" | "DELETE";
  kv: KeyValue;
  prevKv?: KeyValue;
}

/** Every endpoint refused, failed or timed out: callers answer 503. */
export class EtcdUnavailableError extends Error {
  override name = "EtcdUnavailableError";
}

/** etcd answered with a gRPC error (`code` is the gRPC status code). */
export class EtcdError extends Error {
  override name = "EtcdError";
  constructor(
    message: string,
    readonly code: number,
    readonly httpStatus: number,
  ) {
    super(message);
  }
}

/**
 * A read or watch at a revision etcd has compacted away. Range errors do not carry the compact
 * revision (3.4 says only "mvcc: required revision has been compacted"); a watch's cancel does.
 */
export class EtcdCompactedError extends EtcdError {
  override name = "EtcdCompactedError";
  constructor(
    message: string,
    httpStatus: number,
    readonly compactRevision?: number,
  ) {
    super(message, 11, httpStatus);
  }
}

export interface WireHeader {
  revision?: string;
}

export interface WireKeyValue {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}

export interface WireRange {
  header?: WireHeader;
  kvs?: WireKeyValue[];
  more?: boolean;
  count?: string;
}

export interface WireTxn {
  header?: WireHeader;
  succeeded?: boolean;
  responses?: { response_range?: WireRange }[];
}

export interface WireEvent {
  type?: "PUT" | "DELETE";
  kv?: WireKeyValue;
  prev_kv?: WireKeyValue;
}

export interface WireWatchResult {
  header?: WireHeader;
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  compact_revision?: string;
  events?: WireEvent[];
}

/** One object of a streaming reply. */
export interface WireStreamMessage<T> {
  result?: T;
  error?: { grpc_code?: number; http_code?: number; message?: string };
}

export interface WireGrpcError {
  error?: string;
  message?: string;
  code?: number;
}

const COMPACTED = "required revision has been compacted";

export function int64(value: string | number | undefined): number {
  return value === undefined ? 0 : Number(value);
}

export function toBase64(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString("base64");
}

export function decodeKeyValue(wire: WireKeyValue): KeyValue {
  const kv: KeyValue = {
    key: Buffer.from(wire.key ?? "", "base64").toString("utf8"),
    value: new Uint8Array(Buffer.from(wire.value ?? "", "base64")),
    createRevision: int64(wire.create_revision),
    modRevision: int64(wire.mod_revision),
    version: int64(wire.version),
  };
  if (wire.lease !== undefined && wire.lease !== "0") kv.lease = wire.lease;
  return kv;
}

export function decodeEvent(wire: WireEvent): WatchEvent {
  const event: WatchEvent = { type: wire.type === "DELETE" ? "DELETE" : "PUT", kv: decodeKeyValue(wire.kv ?? {}) };
  if (wire.prev_kv) event.prevKv = decodeKeyValue(wire.prev_kv);
  return event;
}

/**
 * The range_end that makes a range cover every key starting with `prefix`: the prefix with its
 * last byte below 0xff incremented (trailing 0xff bytes dropped); "\0" (every key) when none is.
 */
export function prefixEnd(prefix: string): Uint8Array {
  const bytes = new Uint8Array(Buffer.from(prefix, "utf8"));
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]! += 1;
      return end;
    }
  }
  return new Uint8Array([0]);
}

/** The Error for a non-2xx gateway reply; a body that is not a gRPC error is quoted as it is. */
export function gatewayError(httpStatus: number, body: string): EtcdError {
  let parsed: WireGrpcError = {};
  try {
    parsed = JSON.parse(body) as WireGrpcError;
  } catch {
    // Not JSON (a proxy in between, or a crash page): keep the text in the message.
  }
  const message = parsed.message ?? parsed.error ?? (body.slice(0, 200) || `HTTP ${httpStatus}`);
  if (message.includes(COMPACTED)) return new EtcdCompactedError(message, httpStatus);
  return new EtcdError(`etcd: ${message} (gRPC code ${parsed.code ?? "?"}, HTTP ${httpStatus})`, parsed.code ?? 2, httpStatus);
}

/**
 * Splits a stream of concatenated JSON objects into whole objects. The 3.4 gateway writes one
 * object and a newline per message, but a read may end anywhere, so this counts braces (outside
 * strings) rather than trusting chunk or line boundaries.
 */
export class JsonObjectSplitter {
  private pending = "";
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;

  /** Feeds text; returns the objects it completed, as text. */
  push(text: string): string[] {
    const out: string[] = [];
    const offset = this.pending.length;
    this.pending += text;
    for (let i = offset; i < this.pending.length; i++) {
      const c = this.pending[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === "\\") this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') this.inString = true;
      else if (c === "{") {
        if (this.depth++ === 0) this.start = i;
      } else if (c === "}" && this.depth > 0 && --this.depth === 0) {
        out.push(this.pending.slice(this.start, i + 1));
        this.start = -1;
      }
    }
    // Keep only the unfinished object (whitespace between objects is dropped).
    this.pending = this.start < 0 ? "" : this.pending.slice(this.start);
    if (this.start >= 0) this.start = 0;
    return out;
  }
}
