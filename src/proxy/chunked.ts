/**
 * HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), decoded incrementally and strictly: one
 * decoder serves request bodies at the edge and response bodies from clusters, so both sides
 * refuse the same malformed framing instead of guessing.
 */

/** A chunk-size line longer than this is refused (extensions included). */
const MAX_SIZE_LINE = 4096;
/** Trailer section bytes accepted (and dropped) after the last chunk. */
const MAX_TRAILERS = 16 * 1024;
const HEX = /^[0-9A-Fa-f]{1,15}$/;

export type ChunkedResult =
  | { kind: "data"; data: Uint8Array[]; consumed: number; done: boolean }
  | { kind: "error"; message: string };

type State = "size" | "data" | "data-crlf" | "trailers" | "done";

export class ChunkedDecoder {
  private state: State = "size";
  private remaining = 0;
  private line = "";
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === "done";
  }

  /**
   * Feeds `bytes`; returns the body bytes found and how many input bytes belong to the body
   * (bytes after the terminating chunk are left for the next message).
   */
  push(bytes: Uint8Array): ChunkedResult {
    const data: Uint8Array[] = [];
    let i = 0;
    while (i < bytes.length && this.state !== "done") {
      if (this.state === "data") {
        const take = Math.min(this.remaining, bytes.length - i);
        data.push(bytes.subarray(i, i + take));
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = "data-crlf";
        continue;
      }
      // Line-oriented states: collect up to LF, which must follow a CR.
      const lf = bytes.indexOf(0x0a, i);
      const end = lf < 0 ? bytes.length : lf;
      this.line += Buffer.from(bytes.subarray(i, end)).toString("latin1");
      i = lf < 0 ? bytes.length : lf + 1;
      if (this.line.length > MAX_SIZE_LINE) return { kind: "error", message: "chunk size line too long" };
      if (lf < 0) {
        if (this.state === "data-crlf" && this.line.length > 1) return { kind: "error", message: "missing CRLF after chunk data" };
        continue;
      }
      if (!this.line.endsWith("\r")) return { kind: "error", message: "bare LF in chunked body" };
      const line = this.line.slice(0, -1);
      this.line = "";
      const error = this.onLine(line);
      if (error) return { kind: "error", message: error };
    }
    return { kind: "data", data, consumed: i, done: this.state === "done" };
  }

  private onLine(line: string): string | undefined {
    switch (this.state) {
      case "data-crlf":
        if (line !== "") return "missing CRLF after chunk data";
        this.state = "size";
        return undefined;
      case "size": {
        const semicolon = line.indexOf(";");
        const size = semicolon < 0 ? line : line.slice(0, semicolon);
        if (!HEX.test(size)) return `invalid chunk size "${size.slice(0, 32)}"`;
        if (semicolon >= 0 && /[\0\r]/.test(line)) return "invalid chunk extension";
        this.remaining = parseInt(size, 16);
        if (!Number.isSafeInteger(this.remaining)) return "chunk size too large";
        this.state = this.remaining === 0 ? "trailers" : "data";
        return undefined;
      }
      case "trailers":
        if (line === "") {
          this.state = "done";
          return undefined;
        }
        this.trailerBytes += line.length + 2;
        if (this.trailerBytes > MAX_TRAILERS) return "trailer section too large";
        if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/.test(line)) return "malformed trailer line";
        return undefined;
      default:
        return "unexpected chunked state";
    }
  }
}

/** Frames one chunk of body bytes. */
export function encodeChunk(data: Uint8Array): Uint8Array[] {
  return [Buffer.from(`${data.byteLength.toString(16)}\r\n`, "latin1"), data, CRLF];
}

const CRLF = Buffer.from("\r\n", "latin1");
export const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");
