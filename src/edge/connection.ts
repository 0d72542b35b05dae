import type { ClientCertificate, FramedRequest, RequestContext } from "../core/request-context.ts";
import type { ClusterReply } from "../proxy/cluster-reply.ts";
import type { Socket } from "bun";
import { pathNotFound, statusResponse, ApiError } from "../core/status.ts";
import { ChunkedDecoder } from "../proxy/chunked.ts";
import type { UpgradedConnection } from "../proxy/http1-client.ts";
import { linkPipe, PipeEnd } from "../proxy/socket-pipe.ts";
import { isUpgrade, MAX_HEAD_BYTES, parseRequestHead, type RequestHead } from "./request-head.ts";
import { hasDotSegment } from "../proxy/proxy-path.ts";
import { discardReply, writeReply, writeResponse, type ResponseSink } from "./response-writer.ts";
import { logger } from "../core/log.ts";

export type { RequestContext };

/** Serves one framed request: kpass's own answers are Responses, a cluster's answer is a ClusterReply. */
export type RequestHandler = (req: FramedRequest, context: RequestContext) => Promise<Response | ClusterReply>;

/** The edge's side of an upgrade: answer it (connection closes) or join it to the cluster's 101. */
export interface UpgradeClient {
  respond(response: Response): Promise<void>;
  tunnel(upstream: UpgradedConnection): { bytesIn(): number; bytesOut(): number; onClose(callback: () => void): void };
}

export type UpgradeHandler = (head: RequestHead, context: RequestContext, client: UpgradeClient) => Promise<void>;

export interface ConnectionOptions {
  handle: RequestHandler;
  upgrade: UpgradeHandler;
  /** Seconds a started request head may take to complete. */
  headTimeoutSeconds: number;
  /** Seconds a keep-alive connection may wait for its next request. */
  idleTimeoutSeconds: number;
  /** Sees every well-framed request the edge itself refuses (dot segments), for the audit log. */
  onRefused?(context: RequestContext, headers: Headers, error: ApiError): void;
}

type BodyReader = { kind: "length"; remaining: number } | { kind: "chunked"; decoder: ChunkedDecoder };

interface Current {
  head: RequestHead;
  reader?: BodyReader;
  controller?: ReadableStreamDefaultController<Uint8Array>;
  bodyDone: boolean;
  bodyError?: string;
  abort: AbortController;
}

/** The leaf certificate the client presented (DER and serial), or undefined; never throws. */
function peerCertificate(socket: Socket<ClientConnection>): ClientCertificate | undefined {
  try {
    // Bun returns undefined (not {}) when the client sent none, and the DER as `raw`.
    const peer = socket.getPeerCertificate?.() as { raw?: Uint8Array; serialNumber?: string } | undefined | null;
    if (!peer?.raw || peer.raw.byteLength === 0) return undefined;
    return { der: new Uint8Array(peer.raw), serial: (peer.serialNumber ?? "").toUpperCase() };
  } catch {
    return undefined;
  }
}

/**
 * One client connection: frames every request itself (strict heads, bodies by length or
 * chunks), answers pipelined requests in order, owns its idle and head deadlines, and hands
 * upgrade requests over only after they were checked.
 */
export class ClientConnection implements ResponseSink {
  socket: Socket<ClientConnection> | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private state: "head" | "request" | "upgrade" | "tunnel" | "closing" = "head";
  /** Shutting down: no request after the one in flight. */
  private draining = false;
  private current: Current | undefined;
  private readonly queue: Uint8Array[] = [];
  private drainWaiters: (() => void)[] = [];
  private headTimer: ReturnType<typeof setTimeout> | undefined;
  private pipe: PipeEnd | undefined;
  private finishers: (() => void)[] = [];
  /** What the client presented in the TLS handshake, read once; the same object for every request. */
  private clientCertificate: ClientCertificate | undefined;
  /** The peer's address, read once: Bun's getters build a new value on every read. */
  private sourceIP = "";
  private sourcePort = 0;
  closed = false;

  private runFinishers(): void {
    const finishers = this.finishers;
    this.finishers = [];
    for (const f of finishers) f();
  }

  constructor(private readonly options: ConnectionOptions) {}

  opened(socket: Socket<ClientConnection>): void {
    this.socket = socket;
    this.clientCertificate = peerCertificate(socket);
    this.sourceIP = socket.remoteAddress ?? "";
    this.sourcePort = socket.remotePort ?? 0;
    this.waitForHead();
  }

  // ResponseSink: writes with backpressure.
  write(bytes: Uint8Array): boolean {
    const socket = this.socket;
    if (!socket || this.closed) return false;
    // Queued bytes are copied: a reply's body may be a view of the cluster socket's reused buffer.
    if (this.queue.length > 0) {
      this.queue.push(Buffer.from(bytes));
      return false;
    }
    const written = socket.write(bytes);
    if (written < bytes.byteLength) {
      this.queue.push(Buffer.from(bytes.subarray(Math.max(written, 0))));
      return false;
    }
    return true;
  }

  drained(): Promise<void> {
    if (this.queue.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  onDrain(): void {
    if (this.pipe) return this.pipe.flush();
    const socket = this.socket;
    if (!socket) return;
    while (this.queue.length > 0) {
      const chunk = this.queue[0]!;
      const written = socket.write(chunk);
      if (written < chunk.byteLength) {
        this.queue[0] = chunk.subarray(Math.max(written, 0));
        return;
      }
      this.queue.shift();
    }
    if (this.state === "closing") this.socket?.end();
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  onData(chunk: Uint8Array): void {
    if (this.pipe) return this.pipe.peer?.write(chunk);
    if (this.state === "closing") return;
    const current = this.current;
    if (current && !current.bodyDone) {
      const rest = this.feedBody(current, chunk);
      if (rest.byteLength > 0) this.append(rest);
      return;
    }
    // A lone chunk is parsed in place; bytes kept past this callback are copied below, since the
    // socket reuses its buffer.
    this.buffer = this.buffer.byteLength === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([this.buffer, chunk]);
    if (this.state === "head") this.nextRequest();
    else if (this.buffer.byteLength > MAX_HEAD_BYTES) this.socket?.pause(); // pipelined bytes wait their turn
    if (this.buffer.byteLength > 0 && this.buffer.buffer === chunk.buffer) this.buffer = Buffer.from(this.buffer);
  }

  onEnd(): void {
    if (this.pipe) return this.pipe.peer?.halfClose();
    // A client that half-closes after its last request still gets the answer to it.
    if (this.current && !this.current.bodyDone) this.bodyFailed(this.current, "client closed the connection in the middle of the request body");
    if (this.state === "head") this.close();
    else this.state = this.state === "request" ? "closing" : this.state;
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.headTimer);
    if (this.pipe) this.pipe.closedByPeer();
    const current = this.current;
    if (current) {
      if (!current.bodyDone) this.bodyFailed(current, "client closed the connection");
      current.abort.abort();
    }
    this.queue.length = 0;
    this.releaseWaiters();
    this.runFinishers();
  }

  /** Serving a request (a tunnel, once open, is not: it is neither drained nor waited for). */
  get busy(): boolean {
    return this.state === "request" || this.state === "upgrade";
  }

  /** Shutdown: close now when idle, else after the response in flight (with Connection: close). */
  drain(): void {
    this.draining = true;
    if (this.state === "head" && !this.current) this.close();
  }

  /** Closes at once, whatever is in flight. */
  terminate(): void {
    this.socket?.terminate();
    this.onClose();
  }

  onTimeout(): void {
    // Only idle keep-alive connections have a socket timeout; requests in flight have none.
    if (this.state === "head" && this.buffer.byteLength === 0 && !this.current) this.close();
  }

  private append(chunk: Uint8Array): void {
    this.buffer = this.buffer.byteLength === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk]);
  }

  private close(): void {
    if (this.closed) return;
    this.state = "closing";
    if (this.queue.length === 0) this.socket?.end();
  }

  private waitForHead(): void {
    this.socket?.timeout(this.options.idleTimeoutSeconds);
  }

  /** Parses the next request head in the buffer, if complete, and starts serving it. */
  private nextRequest(): void {
    if (this.state !== "head" || this.closed) return;
    if (this.buffer.byteLength === 0) return this.waitForHead();
    const parsed = parseRequestHead(this.buffer);
    if (parsed.kind === "incomplete") {
      this.socket?.timeout(0);
      this.headTimer ??= setTimeout(() => void this.refuse(new ApiError(408, "Timeout", "no complete request head received in time")), this.options.headTimeoutSeconds * 1000);
      return;
    }
    clearTimeout(this.headTimer);
    this.headTimer = undefined;
    this.socket?.timeout(0);
    if (parsed.kind === "error") {
      const reason = parsed.status === 431 ? "RequestEntityTooLarge" : "BadRequest";
      return void this.refuse(new ApiError(parsed.status, reason as "BadRequest", parsed.message));
    }
    const head = parsed.head;
    this.buffer = this.buffer.subarray(head.length);
    const finishers: (() => void)[] = [];
    const context: RequestContext = {
      target: head.target,
      sourceIP: this.sourceIP,
      sourcePort: this.sourcePort,
      rawHeaders: head.rawHeaders,
      clientCertificate: this.clientCertificate,
      onFinished: (callback) => finishers.push(callback),
    };
    this.finishers = finishers;
    if (isUpgrade(head)) return this.startUpgrade(head, context);
    this.state = "request";
    void this.serve(head, context);
  }

  /** A target with a dot segment: never resolved, never forwarded, answered 404 as kube-apiserver does. */
  private refusedAtEdge(context: RequestContext, headers: Headers): ApiError {
    const error = pathNotFound(context.target.split("?")[0]!);
    this.options.onRefused?.(context, headers, error);
    return error;
  }

  /** Answers with a Status and closes: the rest of the connection's bytes cannot be framed. */
  private async refuse(error: ApiError): Promise<void> {
    this.state = "closing";
    this.socket?.pause();
    await writeResponse(this, statusResponse(error), { headOnly: false, chunkedAllowed: false, close: true });
    if (this.queue.length === 0) this.socket?.end();
  }

  private startUpgrade(head: RequestHead, context: RequestContext): void {
    this.state = "upgrade";
    // Nothing after an upgrade head is read until the cluster has said 101.
    this.socket?.pause();
    if (hasDotSegment(head.target)) return void this.refuse(this.refusedAtEdge(context, head.headers));
    const client: UpgradeClient = {
      respond: async (response) => {
        this.state = "closing";
        await writeResponse(this, response, { headOnly: head.method === "HEAD", chunkedAllowed: false, close: true });
        if (this.queue.length === 0) this.socket?.end();
      },
      tunnel: (upstream) => this.joinTunnel(upstream),
    };
    this.options.upgrade(head, context, client).catch((error: unknown) => {
      logger.error("upgrade failed (a bug: the client got a 500)", { error });
      if (this.state === "upgrade") void this.refuse(new ApiError(500, "InternalError", "internal error while opening the stream"));
    });
  }

  private joinTunnel(upstream: UpgradedConnection): { bytesIn(): number; bytesOut(): number; onClose(callback: () => void): void } {
    this.state = "tunnel";
    const clientEnd = new PipeEnd();
    const upstreamEnd = new PipeEnd();
    linkPipe(clientEnd, upstreamEnd);
    this.pipe = clientEnd;
    clientEnd.attach(this.socket!);
    clientEnd.write(upstream.head);
    const headBytes = clientEnd.bytesWritten;
    upstream.attach(upstreamEnd);
    const leftover = this.buffer;
    this.buffer = Buffer.alloc(0);
    if (leftover.byteLength > 0) upstreamEnd.write(leftover);
    if (this.closed) clientEnd.closedByPeer();
    else this.socket?.resume();
    const callbacks: (() => void)[] = [];
    let fired = false;
    const fire = () => {
      if (fired) return;
      fired = true;
      for (const c of callbacks) c();
    };
    clientEnd.onClose = fire;
    upstreamEnd.onClose = fire;
    return { bytesIn: () => upstreamEnd.bytesWritten, bytesOut: () => clientEnd.bytesWritten - headBytes, onClose: (c) => callbacks.push(c) };
  }

  private async serve(head: RequestHead, context: RequestContext): Promise<void> {
    const abort = new AbortController();
    const current: Current = { head, bodyDone: head.body.kind === "none", abort };
    this.current = current;
    let body: ReadableStream<Uint8Array> | null = null;
    if (head.body.kind !== "none") {
      current.reader = head.body.kind === "length" ? { kind: "length", remaining: head.body.length } : { kind: "chunked", decoder: new ChunkedDecoder() };
      // A GET or HEAD body is framed and dropped: no controller is given to the handler.
      if (head.method !== "GET" && head.method !== "HEAD") {
        body = new ReadableStream<Uint8Array>({
          start: (controller) => {
            current.controller = controller;
          },
          pull: () => {
            if (this.current === current) this.socket?.resume();
          },
        });
      }
      // Body bytes already read with the head.
      const buffered = this.buffer;
      this.buffer = Buffer.alloc(0);
      const rest = this.feedBody(current, buffered);
      if (rest.byteLength > 0) this.append(rest);
    }
    let response: Response | ClusterReply;
    if (hasDotSegment(head.target)) response = statusResponse(this.refusedAtEdge(context, head.headers));
    else {
      try {
        response = await this.options.handle({ method: head.method, headers: head.headers, body, signal: abort.signal }, context);
      } catch (error) {
        logger.error("request handler failed (a bug: the client got a 500)", { error });
        response = statusResponse(new ApiError(500, "InternalError", "internal error"));
      }
    }
    if (current.bodyError && !this.closed) {
      discardReply(response);
      response = statusResponse(new ApiError(400, "BadRequest", current.bodyError));
    }
    if (this.closed) return discardReply(response);
    // A body not read to its end leaves the connection's framing unknown: close after answering.
    const close = !head.keepAlive || !current.bodyDone || current.bodyError !== undefined || this.state === "closing" || this.draining;
    const writeOptions = { headOnly: head.method === "HEAD", chunkedAllowed: head.version === "HTTP/1.1", close };
    const complete = response instanceof Response ? await writeResponse(this, response, writeOptions) : await writeReply(this, response, writeOptions);
    this.current = undefined;
    this.runFinishers();
    if (this.closed) return;
    if (!complete || close || !current.bodyDone) {
      this.close();
      if (!complete) this.socket?.terminate();
      return;
    }
    this.state = "head";
    // Shutdown began while this response was streaming (a watch): it was the last one.
    if (this.draining) return this.close();
    this.socket?.resume();
    this.nextRequest();
  }

  /** Feeds body bytes to the current request; returns the bytes after its body. */
  private feedBody(current: Current, chunk: Uint8Array): Uint8Array {
    const reader = current.reader!;
    let taken: Uint8Array[] = [];
    let consumed: number;
    if (reader.kind === "length") {
      consumed = Math.min(reader.remaining, chunk.byteLength);
      taken = [chunk.subarray(0, consumed)];
      reader.remaining -= consumed;
      if (reader.remaining === 0) current.bodyDone = true;
    } else {
      const result = reader.decoder.push(chunk);
      if (result.kind === "error") {
        this.bodyFailed(current, `malformed chunked request body: ${result.message}`);
        return new Uint8Array(0);
      }
      taken = result.data;
      consumed = result.consumed;
      if (result.done) current.bodyDone = true;
    }
    const controller = current.controller;
    if (controller) {
      for (const piece of taken) {
        if (piece.byteLength === 0) continue;
        try {
          controller.enqueue(new Uint8Array(piece));
        } catch {
          // The handler cancelled the body.
        }
      }
      if (current.bodyDone) {
        try {
          controller.close();
        } catch {
          // Already cancelled.
        }
      } else if ((controller.desiredSize ?? 1) <= 0) this.socket?.pause();
    }
    return chunk.subarray(consumed);
  }

  private bodyFailed(current: Current, message: string): void {
    if (current.bodyDone) return;
    current.bodyDone = true;
    current.bodyError = message;
    try {
      current.controller?.error(new Error(message));
    } catch {
      // Already closed.
    }
    // Nothing after a broken body can be framed.
    this.state = "closing";
    this.buffer = Buffer.alloc(0);
  }
}
