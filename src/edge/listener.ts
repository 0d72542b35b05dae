import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { linkPipe, PipeEnd, pipeHandlers } from "./socket-pipe.ts";
import { HTTP11_ALPN, isUpgrade, parseRequestHead, serializeResponse, type RequestHead } from "./request-head.ts";

/** Opens the tunnel for an upgrade request, or answers it with an error; owns `client` from then on. */
export type UpgradeHandler = (head: RequestHead, client: ClientEnd) => Promise<void>;

export interface EdgeOptions {
  hostname: string;
  port: number;
  tls: { cert: string; key: string };
  /** Unix socket of the API server every non-upgrade connection is spliced to. */
  apiSocket: string;
  upgrade: UpgradeHandler;
  /** Seconds a new connection may take to send its first request head. */
  headTimeoutSeconds?: number;
}

/** The client side of a connection, before and after the edge decided what it is. */
export class ClientEnd extends PipeEnd {
  phase: "head" | "deciding" | "piped" = "head";
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  take(chunk: Uint8Array): Buffer {
    this.pending.push(Buffer.from(chunk));
    this.pendingBytes += chunk.byteLength;
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [all];
    return all;
  }

  /** Everything read from the client so far that has not been piped (head included). */
  buffered(): Buffer {
    return this.pending.length === 0 ? Buffer.alloc(0) : Buffer.concat(this.pending, this.pendingBytes);
  }

  /** Pipes the client to `upstream`, replaying the bytes read after the first `skip`. */
  pipeTo(upstream: PipeEnd, skip: number): void {
    linkPipe(this, upstream);
    upstream.write(this.buffered().subarray(skip));
    this.pending = [];
    this.pendingBytes = 0;
    this.phase = "piped";
  }

  /** Sends a final response and closes (used before any upstream exists). */
  reject(status: number, body: string): void {
    this.phase = "piped";
    this.socket?.write(serializeResponse(status, body));
    this.socket?.end();
  }
}

function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

/** Connects `client` to the API server's unix socket and replays what was read so far. */
async function splice(client: ClientEnd, apiSocket: string): Promise<void> {
  const upstream = new PipeEnd();
  client.pipeTo(upstream, 0);
  try {
    const socket: SocketHandler<PipeEnd> = { ...pipeHandlers, open: (s) => upstream.attach(s) };
    await Bun.connect<PipeEnd>({ unix: apiSocket, data: upstream, socket, allowHalfOpen: true });
  } catch {
    upstream.closedByPeer();
  }
}

/**
 * The TLS listener: reads each connection's first request head, then either splices the whole
 * connection to the API server or hands it to the upgrade tunnel.
 */
export function startEdge(options: EdgeOptions): TCPSocketListener<ClientEnd> {
  const headTimeout = options.headTimeoutSeconds ?? 30;
  return Bun.listen<ClientEnd>({
    hostname: options.hostname,
    port: options.port,
    tls: { cert: options.tls.cert, key: options.tls.key, ALPNProtocols: HTTP11_ALPN },
    allowHalfOpen: true,
    socket: {
      open(socket) {
        const client = new ClientEnd();
        socket.data = client;
        client.socket = socket as unknown as Socket<PipeEnd>;
        socket.timeout(headTimeout);
      },
      data(socket, chunk) {
        const client = socket.data;
        if (client.phase === "piped") return pipeHandlers.data(socket as unknown as Socket<PipeEnd>, chunk);
        if (client.phase === "deciding") {
          client.take(chunk);
          return;
        }
        const bytes = client.take(chunk);
        const parsed = parseRequestHead(bytes);
        if (parsed.kind === "incomplete") return;
        socket.timeout(0);
        if (parsed.kind === "error") return client.reject(parsed.message === "request head too large" ? 431 : 400, statusBody(400, "BadRequest", parsed.message));
        client.phase = "deciding";
        // Read nothing more until the connection's fate is decided; piping resumes it.
        socket.pause();
        if (isUpgrade(parsed.head)) {
          options.upgrade(parsed.head, client).catch(() => client.reject(500, statusBody(500, "InternalError", "upgrade failed")));
        } else {
          void splice(client, options.apiSocket);
        }
      },
      drain(socket) {
        socket.data.flush();
      },
      end(socket) {
        if (socket.data.phase === "piped") socket.data.peer?.halfClose();
        else socket.end();
      },
      close(socket) {
        socket.data.closedByPeer();
      },
      error(socket) {
        socket.data.closedByPeer();
      },
      timeout(socket) {
        if (socket.data.phase === "head") socket.data.reject(408, statusBody(408, "Timeout", "no request head received in time"));
      },
    },
  });
}
