import { encodeChunk, LAST_CHUNK } from "../proxy/chunked.ts";
import { headerLinesOf, type ClusterReply } from "../proxy/cluster-reply.ts";

const REASONS: Record<number, string> = {
  200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
  408: "Request Timeout", 409: "Conflict", 410: "Gone", 413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
  429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
  503: "Service Unavailable", 504: "Gateway Timeout",
};

/** The sink a response is written to: returns false when the bytes were queued (wait for drain); queued bytes are copied. */
export interface ResponseSink {
  write(bytes: Uint8Array): boolean;
  drained(): Promise<void>;
  readonly closed: boolean;
}

export type BodyPlan = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" } | { kind: "close" };

/** A response head: the status line, `lines` as given, and the framing the edge decides itself. */
function head(status: number, reason: string, lines: string, plan: BodyPlan, close: boolean): string {
  let text = `HTTP/1.1 ${status} ${reason || REASONS[status] || "Unknown"}\r\n${lines}`;
  if (plan.kind === "length") text += `Content-Length: ${plan.length}\r\n`;
  else if (plan.kind === "chunked") text += "Transfer-Encoding: chunked\r\n";
  else if (plan.kind === "none" && status !== 204 && status !== 304 && status >= 200) text += "Content-Length: 0\r\n";
  if (close || plan.kind === "close") text += "Connection: close\r\n";
  return text + "\r\n";
}

/** The head of `response`; the handler's framing headers are dropped: the edge decides them. */
export function responseHead(response: Response, plan: BodyPlan, close: boolean): Uint8Array {
  return Buffer.from(head(response.status, response.statusText, headerLinesOf(response.headers), plan, close), "latin1");
}

const PENDING: unique symbol = Symbol("pending");

/** The part of a stream reader the writer uses. */
interface BodyReader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
  cancel(): Promise<void>;
}

/** Races a read against a few microtasks: in-memory bodies answer within them, streams do not. */
function readyOrPending(read: Promise<{ done: boolean; value?: Uint8Array }>): Promise<{ done: boolean; value?: Uint8Array } | typeof PENDING> {
  const pending = Promise.resolve().then(() => Promise.resolve()).then((): typeof PENDING => PENDING);
  return Promise.race([read, pending]);
}

export interface WriteOptions {
  /** HEAD requests get the head only. */
  headOnly: boolean;
  /** HTTP/1.0 clients cannot take chunked bodies. */
  chunkedAllowed: boolean;
  /** The connection ends after this response. */
  close: boolean;
}

/**
 * Writes `response` to `sink`: the head as soon as it is known, then the body as it arrives,
 * with backpressure. Resolves true when the response was written completely (the connection may
 * carry another request), false when it ended early.
 */
export async function writeResponse(sink: ResponseSink, response: Response, options: WriteOptions): Promise<boolean> {
  const status = response.status;
  const bodyless = options.headOnly || status === 204 || status === 304 || status < 200;
  const declared = response.headers.get("content-length");
  const body = response.body;
  if (bodyless || !body) {
    if (body) void body.cancel().catch(() => {});
    const plan: BodyPlan = options.headOnly && declared !== null && /^\d+$/.test(declared) ? { kind: "length", length: Number(declared) } : { kind: "none" };
    const head = responseHead(response, plan, options.close);
    // A HEAD answer names the length of the body it would have; nothing follows the head.
    sink.write(head);
    return true;
  }
  const reader: BodyReader = body.getReader();
  if (declared !== null && /^\d{1,15}$/.test(declared)) return writeFixed(sink, response, reader, Number(declared), options);
  // Collect what is ready at once: an in-memory body gets a Content-Length, a stream is chunked.
  const ready: Uint8Array[] = [];
  let total = 0;
  // A read that lost the race is still the next chunk: it must not be dropped.
  let inFlight: Promise<{ done: boolean; value?: Uint8Array }> | undefined;
  for (;;) {
    const read = reader.read();
    const result = await readyOrPending(read);
    if (result === PENDING) {
      inFlight = read;
      break;
    }
    if (result.done) {
      sink.write(Buffer.concat([responseHead(response, { kind: "length", length: total }, options.close), ...ready]));
      return true;
    }
    if (!result.value) continue;
    ready.push(result.value);
    total += result.value.byteLength;
    if (total > 1 << 20) break;
  }
  return writeStream(sink, response, reader, { ready, inFlight }, options);
}

/** A body of unknown length, read as it arrives: chunked when the client allows it, else delimited by close. */
async function writeStream(sink: ResponseSink, response: Response, reader: BodyReader, start: { ready: Uint8Array[]; inFlight?: Promise<{ done: boolean; value?: Uint8Array }> }, options: WriteOptions): Promise<boolean> {
  let inFlight = start.inFlight;
  const plan: BodyPlan = options.chunkedAllowed ? { kind: "chunked" } : { kind: "close" };
  const first: Uint8Array[] = [responseHead(response, plan, options.close)];
  for (const chunk of start.ready) first.push(...(plan.kind === "chunked" ? encodeChunk(chunk) : [chunk]));
  sink.write(first.length === 1 ? first[0]! : Buffer.concat(first));
  try {
    for (;;) {
      const { value, done } = await (inFlight ?? reader.read());
      inFlight = undefined;
      if (sink.closed) {
        void reader.cancel().catch(() => {});
        return false;
      }
      if (done) break;
      if (!value || value.byteLength === 0) continue;
      const ok = plan.kind === "chunked" ? writeChunk(sink, value) : sink.write(value);
      if (!ok) await sink.drained();
    }
  } catch {
    // The source broke mid-body: the client must see a broken body, not a complete one.
    return false;
  }
  if (plan.kind === "chunked") sink.write(LAST_CHUNK);
  return plan.kind === "chunked";
}

async function writeFixed(sink: ResponseSink, response: Response, reader: BodyReader, length: number, options: WriteOptions): Promise<boolean> {
  sink.write(responseHead(response, { kind: "length", length }, options.close));
  let sent = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (sink.closed) {
        void reader.cancel().catch(() => {});
        return false;
      }
      if (done) break;
      if (!value || value.byteLength === 0) continue;
      const room = length - sent;
      if (value.byteLength > room) {
        // More than the declared length: send what was declared and drop the connection after.
        sink.write(value.subarray(0, room));
        void reader.cancel().catch(() => {});
        return false;
      }
      sent += value.byteLength;
      if (!sink.write(value)) await sink.drained();
    }
  } catch {
    return false;
  }
  return sent === length;
}

const replyHead = (reply: ClusterReply, plan: BodyPlan, close: boolean) => head(reply.status, reply.reason, reply.headerLines, plan, close);

/** Below this a chunk is copied into one buffer (one write, one TLS record); above, the copy costs more than two small writes. */
const COPY_CHUNK_BELOW = 16 * 1024;

function writeChunk(sink: ResponseSink, bytes: Uint8Array): boolean {
  const pieces = encodeChunk(bytes);
  if (bytes.byteLength < COPY_CHUNK_BELOW) return sink.write(Buffer.concat(pieces));
  let ok = true;
  for (const piece of pieces) ok = sink.write(piece);
  return ok;
}

/**
 * Writes a cluster's reply to `sink`: its head (the cluster's lines as received, framing the
 * edge's own), then the body — whole in the same write when it came with the head, else pushed
 * from the cluster's socket with backpressure. Tells the reply once how much of the body went out.
 * Resolves true when the reply was written completely (the connection may carry another request).
 */
export function writeReply(sink: ResponseSink, reply: ClusterReply, options: WriteOptions): Promise<boolean> {
  const status = reply.status;
  const body = reply.body;
  if (options.headOnly || status === 204 || status === 304 || status < 200 || body === null) {
    if (body !== null && !(body instanceof Uint8Array)) body.cancel();
    const plan: BodyPlan = options.headOnly && reply.length !== undefined ? { kind: "length", length: reply.length } : { kind: "none" };
    sink.write(Buffer.from(replyHead(reply, plan, options.close), "latin1"));
    reply.sent?.(0, true);
    return Promise.resolve(true);
  }
  if (body instanceof Uint8Array) {
    const head = replyHead(reply, { kind: "length", length: body.byteLength }, options.close);
    const out = Buffer.allocUnsafe(head.length + body.byteLength);
    out.write(head, 0, "latin1");
    out.set(body, head.length);
    sink.write(out);
    reply.sent?.(body.byteLength, true);
    return Promise.resolve(true);
  }
  const length = reply.length;
  const plan: BodyPlan = length !== undefined ? { kind: "length", length } : options.chunkedAllowed ? { kind: "chunked" } : { kind: "close" };
  sink.write(Buffer.from(replyHead(reply, plan, options.close), "latin1"));
  return new Promise<boolean>((resolve) => {
    let sent = 0;
    let done = false;
    const finish = (complete: boolean) => {
      if (done) return;
      done = true;
      reply.sent?.(sent, complete);
      resolve(complete);
    };
    const giveUp = () => {
      body.cancel();
      finish(false);
    };
    body.pipe({
      write(bytes) {
        if (done) return false;
        if (sink.closed) {
          giveUp();
          return false;
        }
        let ok: boolean;
        if (plan.kind === "length") {
          const room = plan.length - sent;
          if (bytes.byteLength > room) {
            // More than the cluster declared: send what it declared and drop the connection after.
            sink.write(bytes.subarray(0, room));
            sent += room;
            giveUp();
            return false;
          }
          ok = sink.write(bytes);
        } else if (plan.kind === "chunked") ok = writeChunk(sink, bytes);
        else ok = sink.write(bytes);
        sent += bytes.byteLength;
        if (!ok) {
          void sink.drained().then(() => {
            if (done) return;
            if (sink.closed) giveUp();
            else body.resume();
          });
        }
        return ok;
      },
      end() {
        if (done) return;
        if (plan.kind === "chunked") sink.write(LAST_CHUNK);
        finish(plan.kind === "chunked" || (plan.kind === "length" && sent === plan.length));
      },
      fail() {
        finish(false);
      },
    });
  });
}

/** A reply or response the client will not get (it left): its body dropped, its `sent` told. */
export function discardReply(reply: Response | ClusterReply): void {
  if (reply instanceof Response) return void reply.body?.cancel().catch(() => {});
  if (reply.body !== null && !(reply.body instanceof Uint8Array)) reply.body.cancel();
  reply.sent?.(0, false);
}
