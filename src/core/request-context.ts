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

/** What the edge knows of a request beyond the Request object, handed to whatever serves it. */
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
