/**
 * A cluster's answer on its way to the client, without Response or Headers objects: the status,
 * the cluster's header lines as received (hop-by-hop ones removed), and a body that is either
 * complete or pushed from the cluster's socket to the client's with backpressure. The edge writes
 * it; kpass's own answers and the few paths that read a body (self reviews) use `Response`.
 */

/** Where a streamed body goes. `write` may be handed a view of a reused buffer: copy to keep it. */
export interface ReplySink {
  /** False: the client cannot take more now; the source pauses until `resume()`. */
  write(bytes: Uint8Array): boolean;
  /** The body is complete. */
  end(): void;
  /** The body broke (the client must see a broken response, not a complete one). */
  fail(error: Error): void;
}

/** A body pushed by its source once piped. */
export interface ReplyStream {
  pipe(sink: ReplySink): void;
  /** The sink drained after a `write` returned false. */
  resume(): void;
  /** The consumer went away: stop, and drop what carried the body. */
  cancel(): void;
}

export interface ClusterReply {
  status: number;
  reason: string;
  /** Header lines, each `Name: value\r\n`, without hop-by-hop fields and without Content-Length. */
  headerLines: string;
  /** The body's declared length (Content-Length), if any. */
  length: number | undefined;
  body: Uint8Array | ReplyStream | null;
  /** Called once by whoever wrote the reply: bytes of body sent, and whether all of it went. */
  sent?: (bytesOut: number, complete: boolean) => void;
}

/** A streamed body as a web ReadableStream (for code that reads a body: self reviews, `Response`). */
export function replyStreamToReadable(stream: ReplyStream): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let waiting = false;
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      stream.pipe({
        write(bytes) {
          controller.enqueue(new Uint8Array(bytes));
          const room = (controller.desiredSize ?? 1) > 0;
          waiting = !room;
          return room;
        },
        end: () => controller.close(),
        fail: (error) => controller.error(error),
      });
    },
    pull() {
      if (!waiting) return;
      waiting = false;
      stream.resume();
    },
    cancel() {
      stream.cancel();
    },
  });
}

/** The reply as a Response (header lines parsed); its `sent` is not called. */
export function replyToResponse(reply: ClusterReply): Response {
  const headers = new Headers();
  for (const line of reply.headerLines.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  if (reply.length !== undefined) headers.set("content-length", String(reply.length));
  const body = reply.body === null ? null : reply.body instanceof Uint8Array ? reply.body : replyStreamToReadable(reply.body);
  return new Response(body, { status: reply.status, statusText: reply.reason, headers });
}

/** Response headers that belong to one hop only, or that the writer of a reply sets itself. */
export const NOT_RELAYED: ReadonlySet<string> = new Set(["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "trailer", "content-length"]);

/** Header lines for a Response's headers, as a reply carries them. */
export function headerLinesOf(headers: Headers): string {
  let lines = "";
  headers.forEach((value, name) => {
    if (!NOT_RELAYED.has(name)) lines += `${name}: ${value}\r\n`;
  });
  return lines;
}

/** A Response (from `fetch`, through an HTTP proxy) as a reply; its body is read as a stream. */
export function responseToReply(response: Response): ClusterReply {
  const declared = response.headers.get("content-length");
  const length = declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : undefined;
  const source = response.body;
  return { status: response.status, reason: response.statusText, headerLines: headerLinesOf(response.headers), length, body: source ? readableToReplyStream(source) : null };
}

/** A web ReadableStream as a pushed body. */
export function readableToReplyStream(source: ReadableStream<Uint8Array>): ReplyStream {
  const reader = source.getReader();
  let sink: ReplySink | undefined;
  let paused = false;
  let reading = false;
  let cancelled = false;
  const pump = async () => {
    if (reading || !sink) return;
    reading = true;
    try {
      while (!paused && !cancelled) {
        const { value, done } = await reader.read();
        if (cancelled) return;
        if (done) return sink.end();
        if (value && value.byteLength > 0 && !sink.write(value)) paused = true;
      }
    } catch (error) {
      if (!cancelled) sink.fail(error as Error);
    } finally {
      reading = false;
    }
  };
  return {
    pipe(s) {
      sink = s;
      void pump();
    },
    resume() {
      paused = false;
      void pump();
    },
    cancel() {
      cancelled = true;
      void reader.cancel().catch(() => {});
    },
  };
}

/**
 * `stream`, ended cleanly (the sink's `end`) when `signal` aborts: a watch whose lease ends
 * finishes as a complete response, so clients re-watch at once. `onEnded` then drops the source.
 */
export function endsWhen(stream: ReplyStream, signal: AbortSignal, onEnded: () => void): ReplyStream {
  let ended = false;
  return {
    pipe(sink) {
      const stop = () => {
        if (ended) return;
        ended = true;
        sink.end();
        stream.cancel();
        onEnded();
      };
      if (signal.aborted) return stop();
      signal.addEventListener("abort", stop, { once: true });
      stream.pipe({
        write: (bytes) => ended || sink.write(bytes),
        end: () => {
          signal.removeEventListener("abort", stop);
          if (!ended) (ended = true), sink.end();
        },
        fail: (error) => {
          signal.removeEventListener("abort", stop);
          if (!ended) (ended = true), sink.fail(error);
        },
      });
    },
    resume: () => stream.resume(),
    cancel: () => stream.cancel(),
  };
}
