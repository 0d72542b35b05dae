/**
 * Request heads as the edge frames them: every request of every connection is parsed here, by
 * one strict set of rules, before any byte of it is trusted. Ambiguity is refused, never guessed.
 */
import { connectionTokens, connectionTokensOf } from "../proxy/upstream-headers.ts";

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
/** Field values hold visible ASCII, SP, HTAB and obs-text; CR and LF only as line ends. */
const BAD_HEAD_CHAR = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;
/** origin-form targets only: visible ASCII, starting with "/". */
const TARGET = /^\/[\x21-\x7e]*$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP\/1\.[01])$/;

export type HeadParse = { kind: "incomplete" } | { kind: "error"; status: 400 | 431; message: string } | { kind: "head"; head: RequestHead };

const bad = (message: string): HeadParse => ({ kind: "error", status: 400, message });

/** Whether an unfinished head already holds a LF not preceded by CR (it could never end in CRLFCRLF). */
function hasBareLf(bytes: Buffer): boolean {
  return /(^|[^\r])\n/.test(bytes.toString("latin1", 0, Math.min(bytes.length, MAX_HEAD_BYTES)));
}

/** The field value between optional whitespace (SP and HTAB only, as RFC 9110 defines OWS). */
function trimOws(line: string, start: number): string {
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 32 || line.charCodeAt(start) === 9)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 32 || line.charCodeAt(end - 1) === 9)) end--;
  return line.slice(start, end);
}

/** Parses an HTTP/1.x request head from the start of `bytes`. */
export function parseRequestHead(bytes: Buffer): HeadParse {
  const end = bytes.indexOf(CRLFCRLF);
  // In a complete head a bare LF fails the line checks below (LF is no token or value character).
  if (end < 0 && hasBareLf(bytes)) return bad("bare LF in request head");
  if (end < 0) return bytes.length > MAX_HEAD_BYTES ? { kind: "error", status: 431, message: "request head too large" } : { kind: "incomplete" };
  if (end + 4 > MAX_HEAD_BYTES) return { kind: "error", status: 431, message: "request head too large" };
  const text = bytes.toString("latin1", 0, end);
  // One pass over the whole head: control characters, and CR or LF outside a CRLF pair.
  if (BAD_HEAD_CHAR.test(text)) return bad("invalid character in request head");
  const firstEnd = text.indexOf("\r\n");
  const requestLine = REQUEST_LINE.exec(firstEnd < 0 ? text : text.slice(0, firstEnd));
  if (!requestLine) return bad("malformed request line");
  const [, method, target, version] = requestLine as unknown as [string, string, string, "HTTP/1.0" | "HTTP/1.1"];
  if (!TARGET.test(target)) return bad("request target must be an origin-form path of visible ASCII characters");
  // Every line is at least "a:" plus CRLF: only a head this long can hold too many of them.
  if (text.length > MAX_HEADER_COUNT * 4 && text.split("\r\n").length - 1 > MAX_HEADER_COUNT) return { kind: "error", status: 431, message: `more than ${MAX_HEADER_COUNT} header fields` };
  const headers = new Headers();
  const rawHeaders: [string, string][] = [];
  // The fields framing and identity depend on, read in the same pass (one lower-casing per line).
  let hosts = 0;
  let authorizations = 0;
  let encodings = 0;
  let encoding: string | undefined;
  let lengths: string[] | undefined;
  let connection = "";
  let start = firstEnd < 0 ? text.length : firstEnd + 2;
  while (start < text.length) {
    let stop = text.indexOf("\r\n", start);
    if (stop < 0) stop = text.length;
    const first = text.charCodeAt(start);
    if (first === 32 || first === 9) return bad("obsolete line folding in request head");
    const colon = text.indexOf(":", start);
    const name = colon > start && colon < stop ? text.slice(start, colon) : "";
    if (!TOKEN.test(name)) return bad("malformed header line");
    const value = trimOws(text.slice(colon + 1, stop), 0);
    rawHeaders.push([name, value]);
    headers.append(name, value);
    start = stop + 2;
    switch (name.length) {
      case 4:
      case 10:
      case 13:
      case 14:
      case 17:
        break;
      default:
        continue;
    }
    switch (name.toLowerCase()) {
      case "host":
        hosts++;
        break;
      case "authorization":
        authorizations++;
        break;
      case "transfer-encoding":
        encodings++;
        encoding = value;
        break;
      case "content-length":
        (lengths ??= []).push(value);
        break;
      case "connection":
        connection = connection === "" ? value : `${connection}, ${value}`;
        break;
    }
  }
  if (hosts > 1) return bad("more than one host header");
  if (authorizations > 1) return bad("more than one authorization header");
  if (encodings > 1) return bad("more than one transfer-encoding header");
  if (version === "HTTP/1.1" && hosts === 0) return bad("missing required Host header");
  const body = bodyFraming(lengths, encoding, version);
  if ("error" in body) return bad(body.error);
  const keepAlive = version === "HTTP/1.1" && !connectionTokensOf(connection).includes("close");
  return { kind: "head", head: { method, target, version, headers, rawHeaders, length: end + 4, body, keepAlive } };
}

function bodyFraming(lengths: string[] | undefined, encoding: string | undefined, version: string): BodyFraming | { error: string } {
  if (encoding !== undefined) {
    if (lengths) return { error: "both Content-Length and Transfer-Encoding" };
    if (version !== "HTTP/1.1") return { error: "Transfer-Encoding in an HTTP/1.0 request" };
    if (encoding.toLowerCase() !== "chunked") return { error: `unsupported Transfer-Encoding "${encoding}"` };
    return { kind: "chunked" };
  }
  if (!lengths) return { kind: "none" };
  if (lengths.some((v) => !/^\d{1,15}$/.test(v))) return { error: "invalid Content-Length" };
  if (new Set(lengths.map(Number)).size > 1) return { error: "conflicting Content-Length headers" };
  const length = Number(lengths[0]);
  return length === 0 ? { kind: "none" } : { kind: "length", length };
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
