import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { linkPipe, PipeEnd, pipeHandlers, type ByteSocket } from "../../src/proxy/socket-pipe.ts";

/**
 * A socket whose send buffer holds `credit` more bytes: a write beyond that comes back short, as
 * Bun's does when the kernel buffer is full. `drain()` stands for the kernel making room.
 */
class FakeSocket implements ByteSocket {
  credit = Number.POSITIVE_INFINITY;
  /** A value to return from the next write instead of accepting anything (Bun may return -1). */
  refuseNext: number | undefined;
  paused = false;
  writeCalls = 0;
  shutdowns = 0;
  ends = 0;
  /** Writes, shutdowns and ends in the order they happened. */
  readonly log: string[] = [];
  private readonly accepted: Uint8Array[] = [];
  /** Set when the socket's handlers are driven through `pipeHandlers`. */
  data: PipeEnd | undefined;

  write(chunk: Uint8Array): number {
    this.writeCalls++;
    if (this.refuseNext !== undefined) {
      const answer = this.refuseNext;
      this.refuseNext = undefined;
      return answer;
    }
    const n = Math.min(chunk.byteLength, this.credit);
    this.credit -= n;
    // Copied, as the kernel would: the pipe may legitimately reuse or slice what it handed over.
    if (n > 0) this.accepted.push(chunk.slice(0, n));
    this.log.push(`write ${new TextDecoder().decode(chunk.subarray(0, n))}`);
    return n;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  shutdown(): void {
    this.shutdowns++;
    this.log.push("shutdown");
  }
  end(): void {
    this.ends++;
    this.log.push("end");
  }

  get received(): Uint8Array {
    return Buffer.concat(this.accepted);
  }
  get receivedBytes(): number {
    return this.accepted.reduce((n, c) => n + c.byteLength, 0);
  }
  text(): string {
    return new TextDecoder().decode(this.received);
  }
}

const bytes = (text: string) => new TextEncoder().encode(text);

/** Client socket A on end `a`, upstream socket B on end `b`: bytes read from A are written to b. */
function pipe(options: { attachA?: boolean; attachB?: boolean } = {}) {
  const a = new PipeEnd();
  const b = new PipeEnd();
  linkPipe(a, b);
  const A = new FakeSocket();
  const B = new FakeSocket();
  A.data = a;
  B.data = b;
  const closes = { a: 0, b: 0 };
  a.onClose = () => closes.a++;
  b.onClose = () => closes.b++;
  if (options.attachA !== false) a.attach(A);
  if (options.attachB !== false) b.attach(B);
  return { a, b, A, B, closes };
}

/** Deterministic so that a failure reproduces (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const asBun = (socket: FakeSocket) => socket as unknown as Socket<PipeEnd>;

describe("bytes through the pipe", () => {
  test("arrive in order and intact both ways across 2,000 chunks each while the sinks take random amounts", () => {
    const { a, b, A, B } = pipe();
    const next = random(0x6b706173);
    const CHUNKS = 2000;
    // Direction 0 is A → b → B; direction 1 is B → a → A.
    const directions = [
      { source: A, sink: B, end: b, sent: [] as Uint8Array[], sentBytes: 0 },
      { source: B, sink: A, end: a, sent: [] as Uint8Array[], sentBytes: 0 },
    ];
    for (const d of directions) d.sink.credit = 0;
    let counter = 0;
    const violations: string[] = [];
    let pausedSeen = 0;

    for (let step = 0; step < 100_000 && directions.some((d) => d.sent.length < CHUNKS); step++) {
      const d = directions[next() < 0.5 ? 0 : 1]!;
      // Now and then a chunk still arrives after pause(): it was already read when pause took effect.
      const inFlight = next() < 0.1;
      if (d.source.paused && !inFlight) {
        d.sink.credit += 1 + Math.floor(next() * 700);
        // Sometimes the room is there before its drain event is: a chunk may arrive in between.
        if (next() < 0.7) d.end.flush();
      } else if (d.sent.length < CHUNKS) {
        // Sizes include 0 and many larger than a typical credit, so most writes come back short.
        const size = Math.floor(next() * 600);
        const chunk = new Uint8Array(size);
        for (let i = 0; i < size; i++) chunk[i] = (counter++ * 31 + (i >> 3)) & 0xff;
        d.sent.push(chunk);
        d.sentBytes += size;
        d.end.write(chunk);
      }
      for (const [i, x] of directions.entries()) {
        // The source may read exactly while nothing it sent is still waiting for the sink.
        const waiting = x.sentBytes - x.sink.receivedBytes;
        if (x.source.paused !== waiting > 0) violations.push(`step ${step} direction ${i}: paused=${x.source.paused} waiting=${waiting}`);
        if (x.source.paused) pausedSeen++;
      }
    }

    expect(violations.slice(0, 5)).toEqual([]);
    expect(pausedSeen).toBeGreaterThan(0);
    for (const d of directions) {
      expect(d.sent).toHaveLength(CHUNKS);
      d.sink.credit = Number.POSITIVE_INFINITY;
      d.end.flush();
      expect(Buffer.from(d.sink.received).equals(Buffer.concat(d.sent))).toBe(true);
      expect(d.end.bytesWritten).toBe(d.sentBytes);
      expect(d.source.paused).toBe(false);
    }
  });

  test("a short write keeps the rest, queues later chunks behind it, and finishes them on drain", () => {
    const { b, A, B } = pipe();
    B.credit = 4;
    b.write(bytes("hello world"));
    expect(B.text()).toBe("hell");
    expect(A.paused).toBe(true);

    const callsBefore = B.writeCalls;
    b.write(bytes("!!"));
    // Writing "!!" now would put it on the wire ahead of "o world".
    expect(B.writeCalls).toBe(callsBefore);

    B.credit = 3;
    b.flush();
    expect(B.text()).toBe("hello w");
    expect(A.paused).toBe(true);

    B.credit = Number.POSITIVE_INFINITY;
    b.flush();
    expect(B.text()).toBe("hello world!!");
    expect(A.paused).toBe(false);
    expect(b.bytesWritten).toBe(13);
  });

  test("a write that takes nothing (0 or -1) loses and duplicates nothing", () => {
    const { b, A, B } = pipe();
    B.refuseNext = -1;
    b.write(bytes("abc"));
    expect(A.paused).toBe(true);
    b.write(bytes("def"));
    B.credit = 0;
    b.flush();
    expect(B.text()).toBe("");
    B.credit = Number.POSITIVE_INFINITY;
    b.flush();
    expect(B.text()).toBe("abcdef");
    expect(A.paused).toBe(false);
  });

  test("empty chunks are neither written nor counted", () => {
    const { b, B } = pipe();
    b.write(new Uint8Array(0));
    expect(B.writeCalls).toBe(0);
    expect(b.bytesWritten).toBe(0);
  });

  test("bytes for a side still connecting wait, with the sender paused, and go out in order when it attaches", () => {
    const { b, A, B } = pipe({ attachB: false });
    b.write(bytes("GET / HTTP/1.1\r\n"));
    b.write(bytes("\r\n"));
    expect(A.paused).toBe(true);
    expect(B.writeCalls).toBe(0);
    b.attach(B);
    expect(B.text()).toBe("GET / HTTP/1.1\r\n\r\n");
    expect(A.paused).toBe(false);
    expect(b.bytesWritten).toBe(18);
  });

  test("each side counts the bytes written to it, once each however many writes it took", () => {
    const { a, b, A, B } = pipe();
    A.credit = 1;
    B.credit = 2;
    b.write(bytes("request"));
    a.write(bytes("response!"));
    for (let i = 0; i < 20 && (A.paused || B.paused); i++) {
      A.credit += 1;
      B.credit += 1;
      a.flush();
      b.flush();
    }
    expect(A.text()).toBe("response!");
    expect(B.text()).toBe("request");
    expect(a.bytesWritten).toBe(9);
    expect(b.bytesWritten).toBe(7);
  });
});

describe("close", () => {
  test("one side closing ends the other and reports each close once", () => {
    const { a, b, A, B, closes } = pipe();
    a.closedByPeer();
    expect(b.closed).toBe(true);
    expect(B.ends).toBe(1);
    // A is already gone; ending it again is not this side's job.
    expect(A.ends).toBe(0);
    expect(closes).toEqual({ a: 1, b: 1 });
    a.closedByPeer();
    b.closedByPeer();
    expect(closes).toEqual({ a: 1, b: 1 });
    expect(B.ends).toBe(1);
  });

  test("works the other way round too", () => {
    const { a, b, A, B, closes } = pipe();
    b.closedByPeer();
    expect(a.closed).toBe(true);
    expect(A.ends).toBe(1);
    expect(B.ends).toBe(0);
    expect(closes).toEqual({ a: 1, b: 1 });
  });

  test("the other side flushes what it still holds before it is ended", () => {
    const { a, b, B, closes } = pipe();
    B.credit = 2;
    b.write(bytes("last words"));
    a.closedByPeer();
    expect(b.closed).toBe(false);
    expect(B.ends).toBe(0);
    expect(closes.b).toBe(0);

    B.credit = Number.POSITIVE_INFINITY;
    b.flush();
    expect(B.text()).toBe("last words");
    expect(B.log.at(-1)).toBe("end");
    expect(b.closed).toBe(true);
    expect(closes.b).toBe(1);
  });

  test("a closed side drops later writes and does not count them", () => {
    const { a, b, B } = pipe();
    b.write(bytes("abc"));
    a.closedByPeer();
    b.write(bytes("def"));
    expect(B.text()).toBe("abc");
    expect(b.bytesWritten).toBe(3);
  });

  test("a side whose peer left while it was still connecting ends its socket on attach and writes nothing", () => {
    const { a, b, B, closes } = pipe({ attachB: false });
    b.write(bytes("orphaned"));
    a.closedByPeer();
    expect(b.closed).toBe(true);
    expect(closes.b).toBe(1);
    b.attach(B);
    expect(B.ends).toBe(1);
    expect(B.writeCalls).toBe(0);
  });
});

describe("half-close", () => {
  test("FIN becomes shutdown() only after the bytes before it are written, and the pipe stays open the other way", () => {
    const { a, b, A, B, closes } = pipe();
    B.credit = 3;
    b.write(bytes("abcdef"));
    b.halfClose();
    expect(B.shutdowns).toBe(0);

    B.credit = Number.POSITIVE_INFINITY;
    b.flush();
    expect(B.log).toEqual(["write abc", "write def", "shutdown"]);
    expect(B.ends).toBe(0);
    expect(b.closed).toBe(false);
    expect(closes).toEqual({ a: 0, b: 0 });

    a.write(bytes("still answering"));
    expect(A.text()).toBe("still answering");
  });

  test("with nothing queued, FIN is passed on at once", () => {
    const { b, B } = pipe();
    b.halfClose();
    expect(B.shutdowns).toBe(1);
    expect(B.ends).toBe(0);
  });

  test("a FIN that arrives before the other side is connected is passed on after its queued bytes", () => {
    const { b, B } = pipe({ attachB: false });
    b.write(bytes("body"));
    b.halfClose();
    b.attach(B);
    expect(B.log).toEqual(["write body", "shutdown"]);
  });
});

describe("pipeHandlers", () => {
  test("route a socket's data, drain, end and close events through its PipeEnd to the other side", () => {
    const { b, A, B, closes } = pipe();
    B.credit = 2;
    pipeHandlers.data(asBun(A), bytes("ping"));
    expect(B.text()).toBe("pi");
    expect(A.paused).toBe(true);
    B.credit = Number.POSITIVE_INFINITY;
    pipeHandlers.drain(asBun(B));
    expect(B.text()).toBe("ping");
    expect(A.paused).toBe(false);

    pipeHandlers.end(asBun(A));
    expect(B.shutdowns).toBe(1);

    pipeHandlers.close(asBun(A));
    expect(b.closed).toBe(true);
    expect(B.ends).toBe(1);
    expect(closes).toEqual({ a: 1, b: 1 });
  });

  test("a socket error closes both sides like a close does", () => {
    const { a, A, B, closes } = pipe();
    pipeHandlers.error(asBun(B));
    expect(a.closed).toBe(true);
    expect(A.ends).toBe(1);
    expect(closes).toEqual({ a: 1, b: 1 });
  });
});
