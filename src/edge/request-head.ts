/** The request line and headers of the first request on a connection, as the edge sees them. */
export interface RequestHead {
  method: string;
  /** Raw request target ("/path?query"), never normalised. */
  target: string;
  version: string;
  headers: Headers;
  /** Length of the head in bytes, including the blank line. */
  length: number;
}

export const MAX_HEAD_BYTES = 64 * 1024;

const CRLFCRLF = Buffer.from("\r\n\r\n");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export type HeadParse = { kind: "incomplete" } | { kind: "error"; message: string } | { kind: "head"; head: RequestHead };

/** Parses an HTTP/1.x request head from the start of `bytes`, strictly (no obs-fold, no bare LF). */
export function parseRequestHead(bytes: Buffer): HeadParse {
  const end = bytes.indexOf(CRLFCRLF);
  if (end < 0) return bytes.length > MAX_HEAD_BYTES ? { kind: "error", message: "request head too large" } : { kind: "incomplete" };
  const lines = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const requestLine = /^([A-Z]+) (\S+) (HTTP\/1\.[01])$/.exec(lines[0] ?? "");
  if (!requestLine) return { kind: "error", message: "malformed request line" };
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name) || /[\r\n\0]/.test(line)) return { kind: "error", message: "malformed header line" };
    headers.append(name, line.slice(colon + 1).trim());
  }
  return { kind: "head", head: { method: requestLine[1]!, target: requestLine[2]!, version: requestLine[3]!, headers, length: end + 4 } };
}

/** Whether the head asks to switch protocols (SPDY/3.1 or WebSocket). */
export function isUpgrade(head: RequestHead): boolean {
  const connection = (head.headers.get("connection") ?? "").toLowerCase().split(",").map((t) => t.trim());
  return connection.includes("upgrade") && head.headers.has("upgrade");
}

const REASONS: Record<number, string> = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable" };

/** A complete HTTP/1.1 response with a JSON body that closes the connection. */
export function serializeResponse(status: number, body: string, extraHeaders: Record<string, string> = {}): Uint8Array {
  const payload = Buffer.from(body);
  const headers = { "Content-Type": "application/json", "Content-Length": String(payload.byteLength), Connection: "close", ...extraHeaders };
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), payload]);
}

/** ALPN offer/selection in wire format: HTTP/1.1 only, never h2 (upgrades need HTTP/1.1). */
export const HTTP11_ALPN = Buffer.from("\x08http/1.1", "latin1");
