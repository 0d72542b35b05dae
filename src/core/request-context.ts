/** What the edge knows of a request beyond the Request object, handed to whatever serves it. */
export interface RequestContext {
  /** The request target exactly as sent (never resolved or re-encoded). */
  target: string;
  /** The client's address and port, as the socket saw them. */
  sourceIP: string;
  sourcePort: number;
  /** Header lines in order, repeated ones separate (Impersonate-Group may contain commas). */
  rawHeaders: [string, string][];
  /** Runs once the response has been written (or the connection ended). */
  onFinished(callback: () => void): void;
}
