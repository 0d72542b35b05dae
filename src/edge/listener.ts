import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
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
  /**
   * More CAs whose client certificates the listener asks for: in aggregated mode the host's
   * requestheader (front-proxy) CA, so that the aggregator (Go) offers its certificate.
   */
  extraClientCaPems?: string[];
  handle: RequestHandler;
  upgrade: UpgradeHandler;
  /** Seconds a started request head may take to complete. */
  headTimeoutSeconds?: number;
  /** Seconds a keep-alive connection with no request in flight stays open. */
  idleTimeoutSeconds?: number;
  onRefused?: ConnectionOptions["onRefused"];
}

/**
 * The TLS listener: every connection is framed and served by its own ClientConnection. It knows
 * its open connections, so that shutdown can drain them and a new certificate can be taken up
 * without dropping them.
 */
export class Edge {
  private listener: TCPSocketListener<ClientConnection>;
  private readonly open = new Set<ClientConnection>();
  private tls: EdgeOptions["tls"];
  private extraClientCas: string[];

  constructor(private readonly options: EdgeOptions) {
    this.tls = options.tls;
    this.extraClientCas = options.extraClientCaPems ?? [];
    this.listener = this.listen(options.port);
  }

  get port(): number {
    return this.listener.port;
  }

  /** Connections serving a request (not idle, not a tunnel). */
  get busy(): number {
    let n = 0;
    for (const c of this.open) if (c.busy) n++;
    return n;
  }

  get connections(): number {
    return this.open.size;
  }

  /**
   * New handshakes use `tls`; open connections keep theirs. Bun cannot swap a listener's
   * certificate, so the listener is closed (its connections stay) and opened again on the same
   * port — a connection attempt in that instant is refused, and clients retry.
   */
  reloadTls(tls: EdgeOptions["tls"]): void {
    checkKeyPair(tls);
    const port = this.listener.port;
    const previous = this.tls;
    this.listener.stop(false);
    try {
      this.tls = tls;
      this.listener = this.listen(port);
    } catch (error) {
      // Never left without a listener: the previous certificate keeps serving.
      this.tls = previous;
      this.listener = this.listen(port);
      throw error;
    }
  }

  /** New handshakes ask for certificates of these CAs too (the front-proxy CA changed); open connections keep theirs. */
  setExtraClientCas(pems: string[]): void {
    if (JSON.stringify(pems) === JSON.stringify(this.extraClientCas)) return;
    this.extraClientCas = pems;
    this.reloadTls(this.tls);
  }

  /** Accepts no new connection; the open ones are left alone. */
  stopAccepting(): void {
    this.listener.stop(false);
  }

  /** Idle connections close now, busy ones after their response; tunnels are left alone. */
  drain(): void {
    for (const c of this.open) c.drain();
  }

  /** Every connection closes now, tunnels included. */
  stop(): void {
    this.listener.stop(true);
    for (const c of [...this.open]) c.terminate();
  }

  private listen(port: number): TCPSocketListener<ClientConnection> {
    const options = this.options;
    const connectionOptions = {
      handle: options.handle,
      upgrade: options.upgrade,
      headTimeoutSeconds: options.headTimeoutSeconds ?? 30,
      idleTimeoutSeconds: options.idleTimeoutSeconds ?? 120,
      onRefused: options.onRefused,
    };
    const open = this.open;
    const tlsOptions = this.tls;
    const cas = [...(options.clientCaPem ? [options.clientCaPem] : []), ...this.extraClientCas];
    return Bun.listen<ClientConnection>({
    hostname: options.hostname,
    port,
    // With `ca` set, the CertificateRequest names the client CA, so Go clients (kubectl) offer
    // only a certificate it issued. rejectUnauthorized: false lets every client through the
    // handshake — token clients and clients with foreign certificates get their answer in HTTP.
    tls: {
      cert: tlsOptions.cert,
      key: tlsOptions.key,
      ALPNProtocols: HTTP11_ALPN,
      ...(cas.length > 0 ? { ca: cas.length === 1 ? cas[0] : cas, requestCert: true, rejectUnauthorized: false } : {}),
    },
    allowHalfOpen: true,
    socket: {
      // No `handshake` handler: with one, Bun calls `open` before the handshake, when the peer
      // certificate is not known yet; without one, `open` runs after it.
      open(socket) {
        socket.data = new ClientConnection(connectionOptions);
        open.add(socket.data);
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
        open.delete(socket.data);
        socket.data.onClose();
      },
      error(socket) {
        open.delete(socket.data);
        socket.data.onClose();
      },
      timeout(socket) {
        socket.data.onTimeout();
      },
    },
    });
  }
}

/** A certificate and key that parse and belong together; else the error says which is wrong. */
function checkKeyPair(tls: EdgeOptions["tls"]): void {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(tls.cert);
  } catch (error) {
    throw new Error(`the serving certificate does not parse: ${(error as Error).message}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(tls.key);
  } catch (error) {
    throw new Error(`the serving key does not parse: ${(error as Error).message}`);
  }
  if (!certificate.checkPrivateKey(key)) throw new Error("the serving key does not belong to the serving certificate");
}

export function startEdge(options: EdgeOptions): Edge {
  return new Edge(options);
}
