import type { TCPSocketListener } from "bun";
import { ClientConnection, type ConnectionOptions, type RequestHandler, type UpgradeHandler } from "./connection.ts";
import { HTTP11_ALPN } from "./request-head.ts";

export interface EdgeOptions {
  hostname: string;
  port: number;
  tls: { cert: string; key: string };
  handle: RequestHandler;
  upgrade: UpgradeHandler;
  /** Seconds a started request head may take to complete. */
  headTimeoutSeconds?: number;
  /** Seconds a keep-alive connection with no request in flight stays open. */
  idleTimeoutSeconds?: number;
  onRefused?: ConnectionOptions["onRefused"];
}

/** The TLS listener: every connection is framed and served by its own ClientConnection. */
export function startEdge(options: EdgeOptions): TCPSocketListener<ClientConnection> {
  const connectionOptions = {
    handle: options.handle,
    upgrade: options.upgrade,
    headTimeoutSeconds: options.headTimeoutSeconds ?? 30,
    idleTimeoutSeconds: options.idleTimeoutSeconds ?? 120,
    onRefused: options.onRefused,
  };
  return Bun.listen<ClientConnection>({
    hostname: options.hostname,
    port: options.port,
    tls: { cert: options.tls.cert, key: options.tls.key, ALPNProtocols: HTTP11_ALPN },
    allowHalfOpen: true,
    socket: {
      open(socket) {
        socket.data = new ClientConnection(connectionOptions);
        socket.data.opened(socket);
      },
      data(socket, chunk) {
        socket.data.onData(chunk);
      },
      drain(socket) {
        socket.data.onDrain();
      },
      end(socket) {
        socket.data.onEnd();
      },
      close(socket) {
        socket.data.onClose();
      },
      error(socket) {
        socket.data.onClose();
      },
      timeout(socket) {
        socket.data.onTimeout();
      },
    },
  });
}
