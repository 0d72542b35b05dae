/**
 * What kpass relays of a cluster's answer, against a cluster that writes its responses byte by
 * byte (a raw TLS socket, not an HTTP library): malformed heads are a 502 and never reach the
 * client, hop-by-hop fields stay on their hop, bodies arrive whole however they were framed, and
 * the audit line counts the bytes the client was sent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { auditLines, clusterManifest, proxyUrl, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";

const BIG = 3 * 1024 * 1024;
/** A body that is not the same byte over and over, so a lost or repeated piece shows. */
const big = Buffer.alloc(BIG);
for (let i = 0; i < BIG; i++) big[i] = (i * 7 + (i >> 11)) & 0xff;
const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

const ok = (extra: string, body: string) => `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

/** Writes `chunks` one by one, `gapMs` apart, with backpressure (the socket queue drained in `drain`). */
async function writeSlowly(socket: Socket<Conn>, chunks: Uint8Array[], gapMs: number): Promise<void> {
  for (const piece of chunks) {
    socket.data.queue.push(piece);
    flush(socket);
    while (socket.data.queue.length > 0) await Bun.sleep(1);
    if (gapMs > 0) await Bun.sleep(gapMs);
  }
}

interface Conn {
  buffer: Buffer;
  queue: Uint8Array[];
}

function flush(socket: Socket<Conn>): void {
  const q = socket.data.queue;
  while (q.length > 0) {
    const n = socket.write(q[0]!);
    if (n < q[0]!.byteLength) {
      q[0] = q[0]!.subarray(Math.max(n, 0));
      return;
    }
    q.shift();
  }
}

/** The answers, by request path. */
function answer(socket: Socket<Conn>, method: string, path: string): void {
  const send = (text: string | Uint8Array) => {
    socket.data.queue.push(typeof text === "string" ? Buffer.from(text, "latin1") : text);
    flush(socket);
  };
  switch (path) {
    case "/version":
      return send(ok("", JSON.stringify({ major: "1", minor: "30", gitVersion: "v1.30.2" })));
    case "/bare-cr":
      return send(`HTTP/1.1 200 OK\r\nX-Evil: a\rSet-Cookie: b\r\nContent-Length: 2\r\n\r\n{}`);
    case "/lf-in-value":
      return send(`HTTP/1.1 200 OK\r\nX-Evil: a\nSet-Cookie: b\r\nContent-Length: 2\r\n\r\n{}`);
    case "/two-lengths":
      return send(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x`);
    case "/length-and-chunked":
      return send(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`);
    case "/gzip-encoded":
      return send(`HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-Evil: 1\r\n\r\n{}`);
    case "/bad-chunk":
      return send(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`);
    case "/hop-by-hop":
      return send(ok("Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n", `{"kind":"Pod"}`));
    case "/interim":
      return send(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n${ok("", `{"after":"interim"}`)}`);
    case "/small-chunked":
      return send(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n4\r\n:12}\r\n0\r\n\r\n`);
    case "/head":
      // A HEAD answer names the length of the body it would have and sends none.
      return send(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${method === "HEAD" ? 1234 : 2}\r\n\r\n${method === "HEAD" ? "" : "{}"}`);
    case "/big-chunked": {
      // Many chunks of uneven size, written with pauses so the relay runs dry and refills.
      const pieces: Uint8Array[] = [Buffer.from("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n", "latin1")];
      for (let at = 0, n = 0; at < BIG; n++) {
        const size = Math.min(BIG - at, [1, 17, 4096, 65536, 300_000][n % 5]!);
        pieces.push(Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), big.subarray(at, at + size), Buffer.from("\r\n")]));
        at += size;
      }
      pieces.push(Buffer.from("0\r\n\r\n"));
      void writeSlowly(socket, pieces, 1);
      return;
    }
    case "/big-length":
      void writeSlowly(socket, [Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${BIG}\r\n\r\n`, "latin1"), big.subarray(0, BIG / 2), big.subarray(BIG / 2)], 20);
      return;
    case "/close-delimited":
      void writeSlowly(socket, [Buffer.from("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "latin1"), big.subarray(0, 100_000)], 10).then(() => socket.end());
      return;
  }
  send(`HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n`);
}

let server: TCPSocketListener<Conn>;
let kpass: KpassProcess;

beforeAll(async () => {
  const ca = await createCertificateAuthority("raw-cluster-ca");
  const serving = await issueServingCertificate(ca, { commonName: "raw", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  server = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: serving.certPem, key: serving.keyPem },
    socket: {
      open(socket) {
        socket.data = { buffer: Buffer.alloc(0), queue: [] };
      },
      data(socket, chunk) {
        socket.data.buffer = Buffer.concat([socket.data.buffer, chunk]);
        for (;;) {
          const end = socket.data.buffer.indexOf("\r\n\r\n");
          if (end < 0) return;
          const [method, target] = socket.data.buffer.toString("latin1", 0, end).split(" ");
          socket.data.buffer = socket.data.buffer.subarray(end + 4);
          answer(socket, method!, target!.split("?")[0]!);
        }
      },
      drain: flush,
    },
  });
  kpass = await startKpass({ args: ["--audit", "file"] });
  const cluster = { url: `https://127.0.0.1:${server.port}`, caPem: ca.certPem } as Parameters<typeof clusterManifest>[1];
  const created = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/clusters", clusterManifest("raw", cluster, { token: "raw-token" }));
  expect(created.status).toBe(201);
});

afterAll(async () => {
  await kpass?.stop();
  server?.stop(true);
  if (kpass) removeDataDir(kpass.dataDir);
});

function get(path: string, method = "GET"): Promise<Response> {
  return fetch(`${proxyUrl(kpass, "raw")}${path}`, { method, headers: { authorization: `Bearer ${kpass.adminToken}` }, tls: { ca: kpass.caPem } });
}

describe("a cluster's malformed answer is a 502 and never reaches the client", () => {
  for (const [path, why] of [
    ["/bare-cr", "a CR inside a header value"],
    ["/lf-in-value", "a bare LF inside a header value"],
    ["/two-lengths", "two different Content-Length values"],
    ["/gzip-encoded", "a Transfer-Encoding other than chunked"],
  ] as const) {
    test(`${why}: 502 Status naming the cluster, no header of it relayed`, async () => {
      const res = await get(path);
      expect(res.status).toBe(502);
      expect(res.headers.get("set-cookie")).toBeNull();
      expect(res.headers.get("x-evil")).toBeNull();
      const body = (await res.json()) as { message: string };
      expect(body).toMatchObject({ kind: "Status", status: "Failure", code: 502, reason: "BadGateway" });
      expect(body.message).toContain('cluster "raw" sent an invalid response');
    });
  }

  test("a malformed chunk size in the first bytes of the body: 502 Status, not a hung request", async () => {
    const res = await get("/bad-chunk");
    expect(res.status).toBe(502);
    expect(((await res.json()) as { message: string }).message).toContain("invalid chunk size");
  });

  test("Content-Length beside Transfer-Encoding: chunked: the chunked framing wins, as RFC 9112 says, and the length is not relayed", async () => {
    const res = await get("/length-and-chunked");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("{}");
  });
});

describe("what kpass relays", () => {
  test("hop-by-hop fields stay on the cluster's hop; end-to-end ones and the body come through", async () => {
    const res = await get("/hop-by-hop");
    expect(res.status).toBe(200);
    for (const name of ["keep-alive", "trailer", "upgrade", "proxy-connection", "transfer-encoding"]) expect(res.headers.get(name)).toBeNull();
    expect(res.headers.get("connection") ?? "").not.toContain("X-Hop");
    expect(res.headers.get("x-hop")).toBeNull();
    expect(res.headers.get("x-kept")).toBe("yes");
    expect(await res.text()).toBe(`{"kind":"Pod"}`);
  });

  test("interim 1xx answers are not relayed: the client gets the final 200", async () => {
    const res = await get("/interim");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ after: "interim" });
  });

  test("a small chunked answer that came whole is relayed with a Content-Length", async () => {
    const res = await get("/small-chunked");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("8");
    expect(await res.json()).toEqual({ a: 12 });
  });

  test("HEAD relays the length the body would have, and no body", async () => {
    const res = await get("/head", "HEAD");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("1234");
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  for (const path of ["/big-chunked", "/big-length"]) {
    test(`${path}: 3 MiB written unevenly and slowly arrives byte for byte, and the audit line counts it`, async () => {
      const res = await get(path);
      expect(res.status).toBe(200);
      const body = new Uint8Array(await res.arrayBuffer());
      expect(body.byteLength).toBe(BIG);
      expect(sha(body)).toBe(sha(big));
      const lines = await auditLines(kpass, (all) => all.some((l) => l.path === path && l.status === 200));
      expect(lines.find((l) => l.path === path && l.status === 200)!.bytesOut).toBe(BIG);
    });
  }

  test("a body delimited by the cluster closing its connection arrives whole", async () => {
    const res = await get("/close-delimited");
    expect(res.status).toBe(200);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(sha(body)).toBe(sha(big.subarray(0, 100_000)));
  });

  test("a client that reads slowly gets the whole body (backpressure, nothing dropped)", async () => {
    const res = await get("/big-chunked");
    const reader = res.body!.getReader();
    const parts: Uint8Array[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      if (parts.length % 8 === 0) await Bun.sleep(5);
    }
    expect(sha(Buffer.concat(parts))).toBe(sha(big));
  });

  test("kpass still answers after all of the above", async () => {
    const res = await fetch(`${kpass.url}/readyz`, { tls: { ca: kpass.caPem } });
    expect(res.status).toBe(200);
  });
});
