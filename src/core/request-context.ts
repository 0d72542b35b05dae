/**
 * The certificate a TLS client presented, as the edge read it once for its connection: the same
 * object for every request on that connection (upgrades included). Not verified here — auth/
 * checks it against kpass's client CA and the Pass it names, on every request.
 */
export interface ClientCertificate {
  /** The leaf certificate, DER. */
  der: Uint8Array;
  /** Its serial number, upper-case hex as `openssl x509 -noout -serial` prints it (for audit lines). */
  serial: string;
}

/**
 * A request as the edge framed it: what a handler reads of it, without the URL parse and header
 * copy of a web `Request` (a `Request` fits this shape; the target is in the RequestContext).
 */
export interface FramedRequest {
  method: string;
  headers: Headers;
  /** The body as it arrives; null when the request has none (and always for GET and HEAD). */
  body: ReadableStream<Uint8Array> | null;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
}

/** What the edge knows of a request beyond its method, headers and body, handed to whatever serves it. */
export interface RequestContext {
  /** The request target exactly as sent (never resolved or re-encoded). */
  target: string;
  /** The client's address and port, as the socket saw them. */
  sourceIP: string;
  sourcePort: number;
  /** Header lines in order, repeated ones separate (Impersonate-Group may contain commas). */
  rawHeaders: [string, string][];
  /** The client certificate of the connection, if the client presented one. */
  clientCertificate?: ClientCertificate;
  /** Runs once the response has been written (or the connection ended). */
  onFinished(callback: () => void): void;
}
