import { connect, type TLSSocket } from "node:tls";

/** A TLS connection that sends bytes exactly as given, for requests a normal client would clean up. */
export class RawConnection {
  private received = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(private readonly socket: TLSSocket) {
    socket.on("data", (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(url: string, caPem: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port), ca: caPem, servername: "localhost", ALPNProtocols: ["http/1.1"] }, () => resolve(new RawConnection(socket)));
      socket.once("error", reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(bytes: string | Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Waits until the received text satisfies `done` or the connection closes, at most `timeoutMs`. */
  async read(done: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.received.toString("latin1")) && !this.closed && Date.now() < deadline) {
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), Bun.sleep(Math.max(1, deadline - Date.now()))]);
    }
    return this.received.toString("latin1");
  }

  /** Reads one complete response with a Content-Length body and removes it from the buffer. */
  async readResponse(timeoutMs = 5000): Promise<{ status: number; headers: string; body: string }> {
    const complete = (text: string) => {
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return false;
      const length = Number(/content-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? "0");
      return text.length >= end + 4 + length;
    };
    const text = await this.read(complete, timeoutMs);
    if (!complete(text)) throw new Error(`no complete response within ${timeoutMs} ms: ${JSON.stringify(text.slice(0, 200))}`);
    const end = text.indexOf("\r\n\r\n");
    const headers = text.slice(0, end);
    const length = Number(/content-length:\s*(\d+)/i.exec(headers)?.[1] ?? "0");
    const body = text.slice(end + 4, end + 4 + length);
    this.received = this.received.subarray(end + 4 + length);
    return { status: Number(headers.split(" ")[1]), headers, body };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request on a fresh connection, the bytes sent verbatim. */
export async function rawRequest(url: string, caPem: string, request: string): Promise<{ status: number; headers: string; body: string }> {
  const connection = await RawConnection.open(url, caPem);
  try {
    connection.send(request);
    return await connection.readResponse();
  } finally {
    connection.close();
  }
}
