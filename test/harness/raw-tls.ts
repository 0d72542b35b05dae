/**
 * A raw TLS client for hostile-input tests: sends bytes exactly as given and reads the answers
 * with an incremental HTTP/1.1 response parser (status line, headers, Content-Length, chunked and
 * close-delimited bodies, several pipelined responses, a 101 followed by tunnel bytes).
 *
 * Every wait is bounded; nothing here throws on a short or broken answer — the parsed responses
 * say what arrived (`complete: false` for a body cut short), and `closed` says whether the server
 * hung up.
 */
import { connect, type TLSSocket } from "node:tls";

export interface RawResponse {
  version: string;
  status: number;
  statusText: string;
  headers: [string, string][];
  /** First value of a header, case-insensitively. */
  header(name: string): string | undefined;
  /** Every value of a header, case-insensitively. */
  headerAll(name: string): string[];
  body: Buffer;
  text: string;
  /** Whether the body arrived whole (false: the connection ended first). */
  complete: boolean;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  json(): any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface ParseResult {
  responses: RawResponse[];
  /** Set when a 101 was parsed: the bytes after its head (the tunnel so far). */
  tunnel?: Buffer;
  /** Bytes that could not be parsed as a response (garbage from the server). */
  error?: string;
}

function makeResponse(version: string, status: number, statusText: string, headers: [string, string][], body: Buffer, complete: boolean): RawResponse {
  const text = body.toString("latin1");
  return {
    version,
    status,
    statusText,
    headers,
    header: (name) => headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1],
    headerAll: (name) => headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v),
    body,
    text,
    complete,
    json() {
      try {
        return JSON.parse(body.toString("utf8"));
      } catch {
        return undefined;
      }
    },
  };
}

type ChunkedResult = { kind: "done"; body: Buffer; end: number } | { kind: "incomplete"; body: Buffer } | { kind: "error"; message: string };

function decodeChunked(buffer: Buffer, start: number): ChunkedResult {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = buffer.indexOf("\r\n", at);
    if (lineEnd < 0) return { kind: "incomplete", body: Buffer.concat(parts) };
    const sizeText = buffer.subarray(at, lineEnd).toString("latin1").split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,15}$/.test(sizeText)) return { kind: "error", message: `bad chunk size ${JSON.stringify(sizeText)}` };
    const size = parseInt(sizeText, 16);
    at = lineEnd + 2;
    if (size === 0) {
      for (;;) {
        const end = buffer.indexOf("\r\n", at);
        if (end < 0) return { kind: "incomplete", body: Buffer.concat(parts) };
        const empty = end === at;
        at = end + 2;
        if (empty) return { kind: "done", body: Buffer.concat(parts), end: at };
      }
    }
    if (buffer.length < at + size) {
      parts.push(buffer.subarray(at));
      return { kind: "incomplete", body: Buffer.concat(parts) };
    }
    parts.push(buffer.subarray(at, at + size));
    at += size;
    if (buffer.length < at + 2) return { kind: "incomplete", body: Buffer.concat(parts) };
    if (buffer[at] !== 0x0d || buffer[at + 1] !== 0x0a) return { kind: "error", message: "chunk not followed by CRLF" };
    at += 2;
  }
}

/**
 * Parses every response in `buffer`. `closed` says the connection ended, which completes a
 * close-delimited body and marks a cut-short one incomplete. `headMethods[i]` = "HEAD" makes the
 * i-th response bodiless.
 */
export function parseResponses(buffer: Buffer, closed: boolean, headMethods: string[] = []): ParseResult {
  const responses: RawResponse[] = [];
  let at = 0;
  while (at < buffer.length) {
    const end = buffer.indexOf("\r\n\r\n", at);
    if (end < 0) {
      if (closed) return { responses, error: `incomplete response head: ${JSON.stringify(buffer.subarray(at, at + 200).toString("latin1"))}` };
      return { responses };
    }
    const lines = buffer.subarray(at, end).toString("latin1").split("\r\n");
    const statusLine = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
    if (!statusLine) return { responses, error: `malformed status line: ${JSON.stringify((lines[0] ?? "").slice(0, 200))}` };
    const version = statusLine[1]!;
    const status = Number(statusLine[2]);
    const statusText = statusLine[3] ?? "";
    const headers: [string, string][] = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) return { responses, error: `malformed response header: ${JSON.stringify(line.slice(0, 200))}` };
      headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    const bodyStart = end + 4;
    const get = (name: string) => headers.find(([n]) => n.toLowerCase() === name)?.[1];
    if (status === 101) {
      responses.push(makeResponse(version, status, statusText, headers, Buffer.alloc(0), true));
      return { responses, tunnel: buffer.subarray(bodyStart) };
    }
    if (status >= 100 && status < 200) {
      at = bodyStart; // informational: no body, not counted
      continue;
    }
    const bodiless = headMethods[responses.length] === "HEAD" || status === 204 || status === 304;
    if (bodiless) {
      responses.push(makeResponse(version, status, statusText, headers, Buffer.alloc(0), true));
      at = bodyStart;
      continue;
    }
    const te = get("transfer-encoding");
    const cl = get("content-length");
    if (te !== undefined && te.toLowerCase() === "chunked") {
      const decoded = decodeChunked(buffer, bodyStart);
      if (decoded.kind === "error") return { responses, error: decoded.message };
      if (decoded.kind === "incomplete") {
        if (closed) responses.push(makeResponse(version, status, statusText, headers, decoded.body, false));
        return { responses };
      }
      responses.push(makeResponse(version, status, statusText, headers, decoded.body, true));
      at = decoded.end;
      continue;
    }
    if (cl !== undefined) {
      const length = Number(cl);
      if (!Number.isInteger(length) || length < 0) return { responses, error: `bad response Content-Length ${JSON.stringify(cl)}` };
      if (buffer.length < bodyStart + length) {
        if (closed) responses.push(makeResponse(version, status, statusText, headers, buffer.subarray(bodyStart), false));
        return { responses };
      }
      responses.push(makeResponse(version, status, statusText, headers, buffer.subarray(bodyStart, bodyStart + length), true));
      at = bodyStart + length;
      continue;
    }
    // Close-delimited.
    if (!closed) return { responses };
    responses.push(makeResponse(version, status, statusText, headers, buffer.subarray(bodyStart), true));
    return { responses };
  }
  return { responses };
}

export interface OpenOptions {
  servername?: string;
  timeoutMs?: number;
  /** A client certificate (PEM) and its key, presented in the handshake. */
  cert?: string;
  key?: string;
}

/** One TLS connection that writes bytes verbatim and parses what comes back. */
export class RawTlsConnection {
  private received = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  /** Whether the server's side ended with an error (reset) rather than a clean close. */
  errored = false;
  /** Method of each request sent with `expectHead`, to parse HEAD responses bodiless. */
  readonly headMethods: string[] = [];

  private constructor(private readonly socket: TLSSocket) {
    socket.on("data", (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on("end", () => this.wake());
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {
      this.errored = true;
      this.closed = true;
      this.wake();
    });
  }

  static open(url: string, caPem: string, options: OpenOptions = {}): Promise<RawTlsConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`TLS connect to ${url} timed out`));
      }, options.timeoutMs ?? 5000);
      const socket = connect({ host: hostname, port: Number(port), ca: caPem, servername: options.servername ?? "localhost", ALPNProtocols: ["http/1.1"], cert: options.cert, key: options.key }, () => {
        clearTimeout(timer);
        resolve(new RawTlsConnection(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Writes bytes as they are (strings as latin1, so every code point < 256 is one byte). */
  write(bytes: string | Uint8Array): void {
    if (this.closed) return;
    try {
      this.socket.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
    } catch {
      this.closed = true;
    }
  }

  /** Half-closes: no more bytes from the client (TLS close_notify + FIN). */
  endWrite(): void {
    try {
      this.socket.end();
    } catch {
      // already gone
    }
  }

  /** Everything received so far, raw. */
  raw(): Buffer {
    return this.received;
  }

  /** Forgets what was received so far (e.g. after a prelude request). */
  discard(): void {
    this.received = Buffer.alloc(0);
  }

  parse(): ParseResult {
    return parseResponses(this.received, this.closed, this.headMethods);
  }

  /** Waits until `done` holds, the connection closes, or `timeoutMs` passes. */
  async waitFor(done: () => boolean, timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (this.closed || Date.now() >= deadline) return done();
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), Bun.sleep(Math.max(1, Math.min(100, deadline - Date.now())))]);
    }
    return true;
  }

  /** Waits for `count` complete responses (or a 101, or the close) and returns what was parsed. */
  async responses(count: number, timeoutMs = 5000): Promise<ParseResult> {
    await this.waitFor(() => {
      const parsed = this.parse();
      return parsed.responses.length >= count || parsed.tunnel !== undefined || parsed.error !== undefined;
    }, timeoutMs);
    return this.parse();
  }

  /** Waits for the server to close the connection; true if it did within `timeoutMs`. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    await this.waitFor(() => this.closed, timeoutMs);
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
