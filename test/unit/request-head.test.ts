import { describe, expect, test } from "bun:test";
import { isUpgrade, MAX_HEAD_BYTES, parseRequestHead } from "../../src/edge/request-head.ts";

const parse = (text: string) => parseRequestHead(Buffer.from(text, "latin1"));

describe("parseRequestHead", () => {
  test("reads method, raw target and headers without normalising the target", () => {
    const text = "POST /apis/x/proxy/api/v1/%2e%2e/pods?command=a&command=b HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nbody";
    const result = parse(text);
    expect(result.kind).toBe("head");
    if (result.kind !== "head") return;
    expect(result.head.method).toBe("POST");
    expect(result.head.target).toBe("/apis/x/proxy/api/v1/%2e%2e/pods?command=a&command=b");
    expect(result.head.headers.get("upgrade")).toBe("SPDY/3.1");
    expect(result.head.length).toBe(text.indexOf("body"));
    expect(isUpgrade(result.head)).toBe(true);
  });

  test("waits for the blank line, then refuses heads over the limit", () => {
    expect(parse("GET / HTTP/1.1\r\nHost: k\r\n").kind).toBe("incomplete");
    expect(parse("GET / HTTP/1.1\r\nX: " + "a".repeat(MAX_HEAD_BYTES)).kind).toBe("error");
  });

  test("refuses malformed request lines and header lines", () => {
    for (const bad of ["GARBAGE\r\n\r\n", "GET / HTTP/2\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n folded\r\n\r\n", "GET / HTTP/1.1\r\nbad header\r\n\r\n", "GET / HTTP/1.1\r\nX:\0\r\n\r\n"]) {
      expect(parse(bad).kind).toBe("error");
    }
  });

  test("an upgrade needs both Connection: upgrade and Upgrade", () => {
    const head = (extra: string) => {
      const r = parse(`GET / HTTP/1.1\r\nHost: k\r\n${extra}\r\n`);
      if (r.kind !== "head") throw new Error("no head");
      return r.head;
    };
    expect(isUpgrade(head("Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"))).toBe(true);
    expect(isUpgrade(head("Upgrade: websocket\r\n"))).toBe(false);
    expect(isUpgrade(head("Connection: upgrade\r\n"))).toBe(false);
  });
});
