import type { TCPSocketListener } from "bun";
import { ClientConnection, type ConnectionOptions, type RequestHandler, type UpgradeHandler } from "./connection.ts";
import { HTTP11_ALPN } from "./request-head.ts";

export interface EdgeOptions {
  hostname: string;
  port: number;
  tls: { cert: string; key: string };
  /**
   * CA of pass client certificates: when set, the listener asks every client for a certificate
   * (requests, does not require one) and hands what it presented to the connection. auth/ checks it.
   */
  clientCaPem?: string;
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
    // With `ca` set, the CertificateRequest names the client CA, so Go clients (kubectl) offer
    // only a certificate it issued. rejectUnauthorized: false lets every client through the
    // handshake — token clients and clients with foreign certificates get their answer in HTTP.
    tls: {
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: HTTP11_ALPN,
      ...(options.clientCaPem ? { ca: options.clientCaPem, requestCert: true, rejectUnauthorized: false } : {}),
    },
    allowHalfOpen: true,
    socket: {
      // No `handshake` handler: with one, Bun calls `open` before the handshake, when the peer
      // certificate is not known yet; without one, `open` runs after it.
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
