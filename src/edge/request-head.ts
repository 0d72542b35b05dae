/**
 * Request heads as the edge frames them: every request of every connection is parsed here, by
 * one strict set of rules, before any byte of it is trusted. Ambiguity is refused, never guessed.
 */

/** How the body after a head is delimited. */
export type BodyFraming = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" };

export interface RequestHead {
  method: string;
  /** Raw request target ("/path?query"), never normalised. */
  target: string;
  version: "HTTP/1.0" | "HTTP/1.1";
  headers: Headers;
  /** Header lines in order, as sent (repeated headers stay separate). */
  rawHeaders: [string, string][];
  /** Length of the head in bytes, including the blank line. */
  length: number;
  body: BodyFraming;
  /** Whether the client lets the connection carry another request after this one. */
  keepAlive: boolean;
}

export const MAX_HEAD_BYTES = 64 * 1024;
export const MAX_HEADER_COUNT = 256;

const CRLFCRLF = Buffer.from("\r\n\r\n");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible ASCII, SP, HTAB and obs-text; no other control characters. */
const BAD_VALUE_CHAR = /[\x00-\x08\x0a-\x1f\x7f]/;
/** origin-form targets only: visible ASCII, starting with "/". */
const TARGET = /^\/[\x21-\x7e]*$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP\/1\.[01])$/;

export type HeadParse = { kind: "incomplete" } | { kind: "error"; status: 400 | 431; message: string } | { kind: "head"; head: RequestHead };

const bad = (message: string): HeadParse => ({ kind: "error", status: 400, message });

/** Whether `bytes` holds a LF that is not preceded by CR (refused: bare LF splits heads differently per parser). */
function hasBareLf(bytes: Uint8Array, end: number): boolean {
  for (let i = bytes.indexOf(0x0a); i >= 0 && i < end; i = bytes.indexOf(0x0a, i + 1)) {
    if (i === 0 || bytes[i - 1] !== 0x0d) return true;
  }
  return false;
}

/** Parses an HTTP/1.x request head from the start of `bytes`. */
export function parseRequestHead(bytes: Buffer): HeadParse {
  const end = bytes.indexOf(CRLFCRLF);
  const scanned = end < 0 ? bytes.length : end;
  if (hasBareLf(bytes, scanned)) return bad("bare LF in request head");
  if (end < 0) return bytes.length > MAX_HEAD_BYTES ? { kind: "error", status: 431, message: "request head too large" } : { kind: "incomplete" };
  if (end + 4 > MAX_HEAD_BYTES) return { kind: "error", status: 431, message: "request head too large" };
  const lines = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const requestLine = REQUEST_LINE.exec(lines[0] ?? "");
  if (!requestLine) return bad("malformed request line");
  const [, method, target, version] = requestLine as unknown as [string, string, string, "HTTP/1.0" | "HTTP/1.1"];
  if (!TARGET.test(target)) return bad("request target must be an origin-form path of visible ASCII characters");
  if (lines.length - 1 > MAX_HEADER_COUNT) return { kind: "error", status: 431, message: `more than ${MAX_HEADER_COUNT} header fields` };
  const headers = new Headers();
  const rawHeaders: [string, string][] = [];
  const counts = new Map<string, number>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(" ") || line.startsWith("\t")) return bad("obsolete line folding in request head");
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) return bad("malformed header line");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (BAD_VALUE_CHAR.test(value) || value.includes("\r")) return bad(`invalid character in header ${name}`);
    const lower = name.toLowerCase();
    counts.set(lower, (counts.get(lower) ?? 0) + 1);
    rawHeaders.push([name, value]);
    headers.append(name, value);
  }
  for (const single of ["host", "authorization", "transfer-encoding"]) {
    if ((counts.get(single) ?? 0) > 1) return bad(`more than one ${single} header`);
  }
  if (version === "HTTP/1.1" && !counts.has("host")) return bad("missing required Host header");
  const body = bodyFraming(rawHeaders, version);
  if ("error" in body) return bad(body.error);
  const connection = connectionTokens(headers);
  const keepAlive = version === "HTTP/1.1" && !connection.includes("close");
  return { kind: "head", head: { method, target, version, headers, rawHeaders, length: end + 4, body, keepAlive } };
}

function bodyFraming(raw: [string, string][], version: string): BodyFraming | { error: string } {
  const lengths = raw.filter(([n]) => n.toLowerCase() === "content-length").map(([, v]) => v);
  const encoding = raw.find(([n]) => n.toLowerCase() === "transfer-encoding")?.[1];
  if (encoding !== undefined) {
    if (lengths.length > 0) return { error: "both Content-Length and Transfer-Encoding" };
    if (version !== "HTTP/1.1") return { error: "Transfer-Encoding in an HTTP/1.0 request" };
    if (encoding.toLowerCase() !== "chunked") return { error: `unsupported Transfer-Encoding "${encoding}"` };
    return { kind: "chunked" };
  }
  if (lengths.length === 0) return { kind: "none" };
  if (lengths.some((v) => !/^\d{1,15}$/.test(v))) return { error: "invalid Content-Length" };
  if (new Set(lengths.map(Number)).size > 1) return { error: "conflicting Content-Length headers" };
  const length = Number(lengths[0]);
  return length === 0 ? { kind: "none" } : { kind: "length", length };
}

/** The lower-cased tokens of the Connection header. */
export function connectionTokens(headers: Headers): string[] {
  const value = headers.get("connection");
  return value ? value.toLowerCase().split(",").map((t) => t.trim()).filter(Boolean) : [];
}

/** Whether the head asks to switch protocols. */
export function isUpgrade(head: Pick<RequestHead, "headers">): boolean {
  return connectionTokens(head.headers).includes("upgrade") && head.headers.has("upgrade");
}

/** The protocols kpass tunnels: SPDY/3.1 (kubectl ≤ 1.29) and WebSocket (channel.k8s.io). */
export function isTunnelProtocol(upgrade: string): boolean {
  return /^(spdy\/3\.1|websocket)$/i.test(upgrade.trim());
}

/** ALPN offer/selection in wire format: HTTP/1.1 only, never h2 (upgrades need HTTP/1.1). */
export const HTTP11_ALPN = Buffer.from("\x08http/1.1", "latin1");
