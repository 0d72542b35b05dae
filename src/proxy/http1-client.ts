import { readdirSync } from "node:fs";
import { checkServerIdentity } from "node:tls";
import type { Socket, SocketHandler } from "bun";
import { ChunkedDecoder, encodeChunk, LAST_CHUNK } from "./chunked.ts";
import type { ClusterTls } from "./cluster-transport.ts";
import { NOT_RELAYED, type ClusterReply, type ReplySink, type ReplyStream } from "./cluster-reply.ts";
import type { PipeEnd } from "./socket-pipe.ts";
import { connectionTokensOf } from "./upstream-headers.ts";

/**
 * kpass's own HTTP/1.1 client toward clusters, on Bun sockets: one keep-alive pool per cluster
 * with no runtime cap on concurrent requests (a watch holds one connection, nothing else), its
 * own connect and response-head deadlines, and upgrades that hand over the socket only after the
 * cluster's `101`. Response heads resolve as soon as they are read, as a ClusterReply (no
 * Response, no Headers); a body that came with its head is handed over whole, any other is pushed
 * from this socket to the reply's sink with backpressure.
 */

export interface UpstreamRequest {
  method: string;
  /** Path and query on the cluster, as sent on the request line. */
  target: string;
  /** Clean end-to-end headers (hop-by-hop ones are added here). */
  headers: Headers;
  /** Impersonate-* lines, one per value: `Headers` would join repeated ones with commas. */
  impersonation?: [string, string][];
  body?: ReadableStream<Uint8Array> | null;
  /** The body's length when known (sent as Content-Length); otherwise the body is chunked. */
  bodyLength?: number;
  signal?: AbortSignal;
  /** Longest wait for the response head after the request was sent; undefined: no deadline. */
  headTimeoutMs?: number;
  /** Hands the socket over on `101 Switching Protocols` instead of reading a body. */
  upgrade?: boolean;
}

/** A connection switched to another protocol by the cluster; bytes flow only once attached. */
export interface UpgradedConnection {
  /** The cluster's 101 head exactly as received. */
  head: Uint8Array;
  attach(pipe: PipeEnd): void;
  close(): void;
}

export interface UpstreamResponse {
  reply: ClusterReply;
  upgraded?: UpgradedConnection;
}

/** Failures carry a code the caller maps to a Status: connect budget, head deadline, or the socket's own. */
export class UpstreamError extends Error {
  constructor(
    readonly code: "CONNECT_TIMEOUT" | "HEAD_TIMEOUT" | "TLS" | "CLOSED" | "PROTOCOL" | "ABORTED" | string,
    message: string,
    /** Closed by the cluster before a single response byte arrived (a stale keep-alive connection). */
    readonly beforeResponse = false,
  ) {
    super(message);
  }
}

/**
 * Connections toward all clusters together. Each proxied stream also holds its client's socket,
 * so kpass stops opening new ones at half the descriptors it has (less a reserve) and answers
 * 503 with Retry-After — rather than running out, which Bun reports as a refused connection and
 * which makes its accept loop spin.
 */
export const connectionBudget = { limit: Number.MAX_SAFE_INTEGER, open: 0 };

/** Sets the budget from the process's descriptor limit. */
export function budgetConnections(descriptorLimit: number): number {
  connectionBudget.limit = Math.max(16, Math.floor((descriptorLimit - 128) / 2));
  return connectionBudget.limit;
}

function descriptorsNearlyExhausted(): boolean {
  try {
    return readdirSync("/proc/self/fd").length >= connectionBudget.limit * 2;
  } catch {
    return false;
  }
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "DELETE"]);
const MAX_RESPONSE_HEAD = 256 * 1024;
const IDLE_POOL_MAX = 64;

type BodyMode = { kind: "none" } | { kind: "length"; remaining: number } | { kind: "chunked"; decoder: ChunkedDecoder } | { kind: "close" };

interface Exchange {
  request: UpstreamRequest;
  resolve(result: UpstreamResponse): void;
  reject(error: Error): void;
  headSettled: boolean;
  headTimer?: ReturnType<typeof setTimeout>;
  requestSent: boolean;
  /** Where the body goes once the reply's reader piped it; bytes before that wait in `early`. */
  sink?: ReplySink;
  early?: Uint8Array[];
  /** The body ended (true) or broke (an Error) before it was piped. */
  earlyEnd?: true | Error;
  bodyMode?: BodyMode;
  keepAlive: boolean;
  /** Bytes received for this exchange: a reused connection that closes before any may be retried. */
  received: number;
}

class UpstreamConnection {
  socket: Socket<UpstreamConnection> | undefined;
  state: "connecting" | "idle" | "busy" | "tunnel" | "closed" = "connecting";
  exchange: Exchange | undefined;
  /** Requests made on this connection (a reused one may have been closed by the cluster meanwhile). */
  uses = 0;
  private headBuffer: Buffer | undefined;
  private readonly writeQueue: Uint8Array[] = [];
  private drainWaiters: (() => void)[] = [];
  tunnel: PipeEnd | undefined;
  private tunnelBuffer: Uint8Array[] = [];
  /** When the connection last went back to the pool (performance.now()). */
  idleSince = 0;

  constructor(private readonly pool: Http1Pool) {}

  write(chunk: Uint8Array): boolean {
    const socket = this.socket;
    if (!socket || this.state === "closed") return false;
    if (this.writeQueue.length > 0) {
      this.writeQueue.push(chunk);
      return false;
    }
    const written = socket.write(chunk);
    if (written < chunk.byteLength) {
      this.writeQueue.push(chunk.subarray(Math.max(written, 0)));
      return false;
    }
    return true;
  }

  drained(): Promise<void> {
    if (this.writeQueue.length === 0 || this.state === "closed") return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  onDrain(): void {
    if (this.tunnel) return this.tunnel.flush();
    const socket = this.socket;
    if (!socket) return;
    while (this.writeQueue.length > 0) {
      const chunk = this.writeQueue[0]!;
      const written = socket.write(chunk);
      if (written < chunk.byteLength) {
        this.writeQueue[0] = chunk.subarray(Math.max(written, 0));
        return;
      }
      this.writeQueue.shift();
    }
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** Starts an exchange on this (open, idle) connection. */
  start(request: UpstreamRequest, resolve: Exchange["resolve"], reject: Exchange["reject"]): void {
    this.state = "busy";
    this.uses++;
    const exchange: Exchange = { request, resolve, reject, headSettled: false, requestSent: false, keepAlive: true, received: 0 };
    this.exchange = exchange;
    const signal = request.signal;
    if (signal) {
      if (signal.aborted) return this.fail(new UpstreamError("ABORTED", "request aborted"));
      // No { once: true }: a signal aborts once, and parsing the options object costs ~0.4 µs.
      signal.addEventListener("abort", () => this.exchange === exchange && this.fail(new UpstreamError("ABORTED", "request aborted")));
    }
    this.write(requestHead(request, this.pool.hostHeader));
    void this.sendBody(exchange);
    if (request.headTimeoutMs !== undefined) {
      exchange.headTimer = setTimeout(() => {
        if (!exchange.headSettled) this.fail(new UpstreamError("HEAD_TIMEOUT", `no response head within ${Math.round(request.headTimeoutMs! / 1000)}s`));
      }, request.headTimeoutMs);
    }
  }

  private async sendBody(exchange: Exchange): Promise<void> {
    const { body, bodyLength } = exchange.request;
    if (!body) {
      exchange.requestSent = true;
      return;
    }
    const chunked = bodyLength === undefined;
    let sent = 0;
    const reader = body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (this.exchange !== exchange || this.state === "closed") return void reader.cancel().catch(() => {});
        if (done) break;
        if (!value || value.byteLength === 0) continue;
        sent += value.byteLength;
        if (!chunked && sent > bodyLength) throw new Error("request body longer than its Content-Length");
        let ok = true;
        for (const piece of chunked ? encodeChunk(value) : [value]) ok = this.write(piece) && ok;
        if (!ok) await this.drained();
      }
      if (!chunked && sent !== bodyLength) throw new Error("request body shorter than its Content-Length");
      if (chunked) this.write(LAST_CHUNK);
      exchange.requestSent = true;
    } catch (error) {
      // A broken request body must not leave a half-sent request on a connection that could be reused.
      if (this.exchange === exchange) this.fail(new UpstreamError("ABORTED", `request body failed: ${(error as Error).message ?? error}`));
    }
  }

  onData(chunk: Uint8Array): void {
    if (this.tunnel) return this.tunnel.peer?.write(chunk);
    if (this.state === "tunnel") {
      this.tunnelBuffer.push(Buffer.from(chunk));
      return;
    }
    const exchange = this.exchange;
    if (!exchange) {
      // Bytes nobody asked for: the connection's framing cannot be trusted any more.
      return this.destroy();
    }
    exchange.received += chunk.byteLength;
    if (!exchange.headSettled) {
      // Parsed in place; whatever must outlive this callback is copied (the socket reuses its buffer).
      this.headBuffer = this.headBuffer ? Buffer.concat([this.headBuffer, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      this.readHead(exchange);
      return;
    }
    this.readBody(exchange, chunk);
  }

  private readHead(exchange: Exchange): void {
    for (;;) {
      const buffer = this.headBuffer!;
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buffer.length > MAX_RESPONSE_HEAD) return this.fail(new UpstreamError("PROTOCOL", "response head too large"));
        this.headBuffer = Buffer.from(buffer);
        return;
      }
      const parsed = parseResponseHead(buffer.subarray(0, end).toString("latin1"));
      if (typeof parsed === "string") return this.fail(new UpstreamError("PROTOCOL", parsed));
      const rest = buffer.subarray(end + 4);
      if (parsed.status === 101 && exchange.request.upgrade) {
        this.headBuffer = undefined;
        return this.switchProtocols(exchange, buffer.subarray(0, end + 4), rest);
      }
      if (parsed.status >= 100 && parsed.status < 200) {
        // Interim responses (100 Continue, 103) are not relayed.
        this.headBuffer = rest;
        continue;
      }
      this.headBuffer = undefined;
      return this.respond(exchange, parsed, rest);
    }
  }

  private respond(exchange: Exchange, head: ParsedResponseHead, rest: Uint8Array): void {
    clearTimeout(exchange.headTimer);
    // Until the reply is handed over a failure rejects the request (a 502), after it breaks the body.
    const hand = (reply: ClusterReply) => {
      exchange.headSettled = true;
      exchange.resolve({ reply });
    };
    const noBody = exchange.request.method === "HEAD" || head.status === 204 || head.status === 304;
    const { transferEncoding: encoding, contentLength: length } = head;
    let mode: BodyMode;
    if (noBody) mode = { kind: "none" };
    else if (encoding !== undefined) {
      if (encoding.toLowerCase() !== "chunked") return this.fail(new UpstreamError("PROTOCOL", `unsupported Transfer-Encoding "${encoding}" from cluster`));
      mode = { kind: "chunked", decoder: new ChunkedDecoder() };
    } else if (length !== undefined) mode = { kind: "length", remaining: length };
    else mode = { kind: "close" };
    exchange.bodyMode = mode;
    exchange.keepAlive = head.keepAlive && mode.kind !== "close" && !exchange.request.upgrade;
    const upgradeRefused = exchange.request.upgrade === true;
    const reply: ClusterReply = { status: head.status, reason: head.reason, headerLines: head.lines, length: encoding === undefined ? length : undefined, body: null };
    if (mode.kind === "none" || (mode.kind === "length" && mode.remaining === 0)) {
      hand(reply);
      return this.finish(exchange, rest.byteLength > 0 || upgradeRefused);
    }
    if (mode.kind === "length" && rest.byteLength >= mode.remaining) {
      reply.body = new Uint8Array(rest.subarray(0, mode.remaining));
      hand(reply);
      return this.finish(exchange, rest.byteLength > mode.remaining || upgradeRefused);
    }
    if (mode.kind === "chunked" && rest.byteLength > 0) {
      // A small chunked answer that came whole with its head is handed over whole, with a length.
      const decoded = mode.decoder.push(rest);
      if (decoded.kind === "error") return this.fail(new UpstreamError("PROTOCOL", decoded.message));
      if (decoded.done) {
        reply.body = new Uint8Array(Buffer.concat(decoded.data));
        reply.length = reply.body.byteLength;
        hand(reply);
        return this.finish(exchange, decoded.consumed < rest.byteLength || upgradeRefused);
      }
      reply.body = this.bodyStream(exchange);
      hand(reply);
      for (const data of decoded.data) this.deliver(exchange, data);
      return;
    }
    reply.body = this.bodyStream(exchange);
    hand(reply);
    if (rest.byteLength > 0) this.readBody(exchange, rest);
  }

  /** The body of `exchange` as the reply's stream: pushed to the sink it is piped to. */
  private bodyStream(exchange: Exchange): ReplyStream {
    return {
      pipe: (sink) => {
        exchange.sink = sink;
        const early = exchange.early;
        exchange.early = undefined;
        let room = true;
        for (const bytes of early ?? []) room = sink.write(bytes) && room;
        const end = exchange.earlyEnd;
        if (end === true) return sink.end();
        if (end) return sink.fail(end);
        if (room && this.exchange === exchange) this.socket?.resume();
      },
      resume: () => {
        if (this.exchange === exchange) this.socket?.resume();
      },
      cancel: () => {
        exchange.sink = undefined;
        exchange.early = undefined;
        if (this.exchange === exchange) this.destroy();
      },
    };
  }

  /** Body bytes for the client: to the sink (pausing when it is full), or kept until it is piped. */
  private deliver(exchange: Exchange, data: Uint8Array): void {
    if (data.byteLength === 0) return;
    const sink = exchange.sink;
    if (sink) {
      if (!sink.write(data)) this.socket?.pause();
      return;
    }
    // The socket's buffer is reused after this callback: keep a copy, and read no more until piped.
    (exchange.early ??= []).push(new Uint8Array(data));
    this.socket?.pause();
  }

  private endBody(exchange: Exchange, outcome: true | Error): void {
    const sink = exchange.sink;
    exchange.sink = undefined;
    if (!sink) exchange.earlyEnd ??= outcome;
    else if (outcome === true) sink.end();
    else sink.fail(outcome);
  }

  private readBody(exchange: Exchange, chunk: Uint8Array): void {
    const mode = exchange.bodyMode!;
    switch (mode.kind) {
      case "close":
        return this.deliver(exchange, chunk);
      case "length": {
        const take = Math.min(mode.remaining, chunk.byteLength);
        this.deliver(exchange, chunk.subarray(0, take));
        mode.remaining -= take;
        if (mode.remaining === 0) this.finish(exchange, take < chunk.byteLength);
        return;
      }
      case "chunked": {
        const result = mode.decoder.push(chunk);
        if (result.kind === "error") return this.fail(new UpstreamError("PROTOCOL", result.message));
        for (const data of result.data) this.deliver(exchange, data);
        if (result.done) this.finish(exchange, result.consumed < chunk.byteLength);
        return;
      }
      case "none":
        return this.destroy();
    }
  }

  /** The response is complete: end its body and give the connection back, or drop it. */
  private finish(exchange: Exchange, trailingBytes: boolean): void {
    this.endBody(exchange, true);
    this.socket?.resume();
    this.exchange = undefined;
    if (trailingBytes || !exchange.keepAlive || !exchange.requestSent) return this.destroy();
    this.pool.release(this);
  }

  private switchProtocols(exchange: Exchange, head: Uint8Array, rest: Uint8Array): void {
    exchange.headSettled = true;
    clearTimeout(exchange.headTimer);
    this.state = "tunnel";
    this.exchange = undefined;
    if (rest.byteLength > 0) this.tunnelBuffer.push(Buffer.from(rest));
    const upgraded: UpgradedConnection = {
      head: new Uint8Array(head),
      attach: (pipe) => {
        this.tunnel = pipe;
        const pending = this.tunnelBuffer;
        this.tunnelBuffer = [];
        pipe.attach(this.socket as unknown as Parameters<PipeEnd["attach"]>[0]);
        for (const bytes of pending) pipe.peer?.write(bytes);
        if (this.state === "closed") pipe.closedByPeer();
      },
      close: () => this.destroy(),
    };
    exchange.resolve({ reply: { status: 101, reason: "Switching Protocols", headerLines: "", length: undefined, body: null }, upgraded });
  }

  fail(error: Error): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    if (exchange) {
      clearTimeout(exchange.headTimer);
      if (!exchange.headSettled) {
        exchange.headSettled = true;
        exchange.reject(error);
      } else this.endBody(exchange, error);
    }
    this.destroy();
  }

  destroy(): void {
    if (this.state === "closed") return;
    const tunnelled = this.state === "tunnel";
    this.state = "closed";
    this.pool.forget(this);
    if (tunnelled) this.socket?.end();
    else this.socket?.terminate();
    for (const w of this.drainWaiters) w();
    this.drainWaiters = [];
  }

  /** The socket closed (from the close/error handler). */
  onClose(error?: Error): void {
    if (this.tunnel) {
      this.state = "closed";
      return this.tunnel.closedByPeer();
    }
    const exchange = this.exchange;
    if (exchange?.bodyMode?.kind === "close" && !error) {
      // A close-delimited body ends with the connection.
      this.exchange = undefined;
      this.endBody(exchange, true);
    } else if (exchange) {
      const message = error?.message ?? (exchange.headSettled ? "connection closed in the middle of the response body" : "connection closed before the response head");
      this.fail(new UpstreamError("CLOSED", message, exchange.received === 0 && !exchange.headSettled));
    }
    this.state = "closed";
    this.pool.forget(this);
  }

  onEnd(): void {
    if (this.tunnel) return this.tunnel.peer?.halfClose();
    this.onClose();
  }
}

interface ParsedResponseHead {
  status: number;
  reason: string;
  /** The header lines to relay, each `Name: value\r\n` (hop-by-hop fields and Content-Length left out). */
  lines: string;
  contentLength?: number;
  transferEncoding?: string;
  keepAlive: boolean;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** The cluster's head as text holds no control characters but HTAB (CRLF only as line ends, which split removed). */
const BAD_FIELD_CHAR = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Parses a response head into the lines to relay; a string is why it is malformed. */
function parseResponseHead(text: string): ParsedResponseHead | string {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.([01]) (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/.exec(lines[0] ?? "");
  if (!status) return "malformed status line from cluster";
  let relayed = "";
  let connection = "";
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name) || BAD_FIELD_CHAR.test(line)) return "malformed header line from cluster";
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (!NOT_RELAYED.has(lower)) {
      relayed += `${name}: ${value}\r\n`;
      continue;
    }
    if (lower === "connection") connection += `${value},`;
    else if (lower === "transfer-encoding") transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
    else if (lower === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== value)) return "invalid Content-Length from cluster";
      contentLength = value;
    }
  }
  const tokens = connectionTokensOf(connection);
  // Fields the cluster named in Connection belong to its hop too (RFC 9110 §7.6.1).
  const named = tokens.filter((t) => t !== "close" && t !== "keep-alive" && t !== "upgrade");
  if (named.length > 0) relayed = relayed.split("\r\n").filter((line) => line !== "" && !named.includes(line.slice(0, line.indexOf(":")).toLowerCase())).map((line) => `${line}\r\n`).join("");
  const keepAlive = status[1] === "1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  return { status: Number(status[2]), reason: status[3] ?? "", lines: relayed, contentLength: contentLength === undefined ? undefined : Number(contentLength), transferEncoding, keepAlive };
}

function requestHead(request: UpstreamRequest, host: string): Uint8Array {
  let head = `${request.method} ${request.target} HTTP/1.1\r\nHost: ${host}\r\n`;
  const lines = request.impersonation;
  request.headers.forEach((value, name) => {
    if (lines && name.startsWith("impersonate-")) return;
    head += `${name}: ${value}\r\n`;
  });
  for (const [name, value] of lines ?? []) head += `${name}: ${value}\r\n`;
  if (request.upgrade) {
    // An upgrade carries no body: the bytes after its head belong to the next protocol.
  } else if (request.body) head += request.bodyLength === undefined ? "Transfer-Encoding: chunked\r\n" : `Content-Length: ${request.bodyLength}\r\n`;
  else if (request.method === "POST" || request.method === "PUT" || request.method === "PATCH") head += "Content-Length: 0\r\n";
  return Buffer.from(head + "\r\n", "latin1");
}

const handlers: SocketHandler<UpstreamConnection> = {
  data(socket, chunk) {
    socket.data.onData(chunk);
  },
  drain(socket) {
    socket.data.onDrain();
  },
  end(socket) {
    socket.data.onEnd();
  },
  close(socket, error) {
    socket.data.onClose(error);
  },
  error(socket, error) {
    socket.data.onClose(error);
  },
};

export interface PoolOptions {
  endpoint: URL;
  tls: ClusterTls;
  connectTimeoutMs: number;
  /** Seconds an idle keep-alive connection is kept. */
  idleSeconds?: number;
}

/** The keep-alive pool toward one cluster. Connections are opened on demand, without a cap. */
export class Http1Pool {
  readonly hostHeader: string;
  private readonly idle: UpstreamConnection[] = [];
  private readonly open = new Set<UpstreamConnection>();
  private closed = false;
  private sweepTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: PoolOptions) {
    this.hostHeader = options.endpoint.host;
  }

  request(request: UpstreamRequest): Promise<UpstreamResponse> {
    const reused = this.idle.pop();
    if (!reused) return this.connect(request.signal).then((connection) => new Promise<UpstreamResponse>((resolve, reject) => connection.start(request, resolve, reject)));
    return new Promise<UpstreamResponse>((resolve, reject) =>
      reused.start(request, resolve, (error) => {
        // A kept-alive connection the cluster closed meanwhile: retry on another when nothing was
        // received and no body could have been consumed (the retry settles this promise).
        const retriable = error instanceof UpstreamError && error.beforeResponse && !request.body && !request.upgrade && IDEMPOTENT.has(request.method);
        if (retriable) resolve(this.request(request));
        else reject(error);
      }),
    );
  }

  release(connection: UpstreamConnection): void {
    if (this.closed || connection.state === "closed" || this.idle.length >= IDLE_POOL_MAX) return connection.destroy();
    connection.state = "idle";
    connection.idleSince = performance.now();
    this.idle.push(connection);
    this.sweepLater();
  }

  /**
   * Idle connections are closed by one sweep per pool, not a timer each: a timer set and cleared
   * on every exchange cost ~5 µs per request under load (measured; a micro-benchmark of the same
   * calls says 0.15 µs, the event loop pays the rest).
   */
  private sweepLater(): void {
    if (this.sweepTimer || this.closed) return;
    const idleMs = (this.options.idleSeconds ?? 90) * 1000;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      const now = performance.now();
      // Oldest first: connections are pushed as they go idle and popped from the end.
      while (this.idle.length > 0 && now - this.idle[0]!.idleSince >= idleMs) this.idle[0]!.destroy();
      if (this.idle.length > 0) this.sweepLater();
    }, Math.max(1000, idleMs / 4));
    this.sweepTimer.unref?.();
  }

  forget(connection: UpstreamConnection): void {
    if (this.open.delete(connection)) connectionBudget.open--;
    const i = this.idle.indexOf(connection);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes idle connections now; busy ones close when their exchange ends. */
  close(): void {
    this.closed = true;
    clearTimeout(this.sweepTimer);
    for (const connection of [...this.idle]) connection.destroy();
  }

  private connect(signal: AbortSignal | undefined): Promise<UpstreamConnection> {
    const { endpoint, tls, connectTimeoutMs } = this.options;
    const hostname = endpoint.hostname.replace(/^\[|\]$/g, "");
    const secure = endpoint.protocol === "https:";
    const port = Number(endpoint.port || (secure ? 443 : 80));
    const connection = new UpstreamConnection(this);
    if (connectionBudget.open >= connectionBudget.limit) {
      return Promise.reject(new UpstreamError("EMFILE", `kpass holds ${connectionBudget.open} connections to clusters, its limit for the descriptors it has`));
    }
    // Bun reports a socket() that failed for want of descriptors as a refused connection.
    const failure = (code: string, message: string) => (code === "ECONNREFUSED" && descriptorsNearlyExhausted() ? new UpstreamError("EMFILE", "out of file descriptors") : new UpstreamError(code, message));
    return new Promise<UpstreamConnection>((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (!error && this.closed) error = new UpstreamError("CLOSED", "cluster transport closed");
        if (error) {
          connection.destroy();
          reject(error);
        } else {
          connection.state = "idle";
          this.open.add(connection);
          connectionBudget.open++;
          resolve(connection);
        }
      };
      const onAbort = () => settle(new UpstreamError("ABORTED", "request aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      const timer = setTimeout(() => settle(new UpstreamError("CONNECT_TIMEOUT", `no connection within ${Math.round(connectTimeoutMs / 1000)}s`)), connectTimeoutMs);
      const socketHandlers: SocketHandler<UpstreamConnection> = {
        ...handlers,
        open(socket) {
          connection.socket = socket;
          if (!secure) settle();
        },
        handshake(socket, success, authorizationError) {
          settle(tls.rejectUnauthorized ? handshakeFailure(tls.serverName ?? hostname, socket, success, authorizationError) : undefined);
        },
        connectError(_socket, error) {
          settle(failure((error as { code?: string }).code ?? "CONNECT", error.message));
        },
        close(socket, error) {
          if (!settled) settle(new UpstreamError("CLOSED", secure ? "connection closed during TLS handshake" : "connection closed"));
          else socket.data.onClose(error);
        },
      };
      Bun.connect<UpstreamConnection>({
        hostname,
        port,
        data: connection,
        allowHalfOpen: true,
        tls: secure ? socketTls(tls, hostname) : undefined,
        socket: socketHandlers,
      }).catch((error: Error) => settle(failure((error as { code?: string }).code ?? "CONNECT", error.message)));
    });
  }
}

/**
 * Verification is kpass's own (rejectUnauthorized is off on the socket) so that a failure is
 * reported with its cause instead of a bare reset.
 */
function handshakeFailure(serverName: string, socket: Socket<UpstreamConnection>, success: boolean, authorizationError: Error | null): UpstreamError | undefined {
  const identityError = success ? checkServerIdentity(serverName, socket.getPeerCertificate()) : undefined;
  const failure = !success || authorizationError ? (authorizationError ?? new Error("certificate verification failed")) : identityError;
  return failure ? new UpstreamError("TLS", `${(failure as { code?: string }).code ?? "CERT_VERIFICATION_FAILED"}: ${failure.message}`) : undefined;
}

function socketTls(tls: ClusterTls, hostname: string) {
  const serverName = tls.serverName ?? (/^[\d.:]+$/.test(hostname) ? undefined : hostname);
  return { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: false, serverName, ALPNProtocols: Buffer.from("\x08http/1.1", "latin1") };
}
