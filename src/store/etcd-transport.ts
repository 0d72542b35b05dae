/**
 * HTTP to etcd's gRPC-gateway with endpoint failover: the one place that knows endpoints, TLS
 * and timeouts. A connection error, a timeout or gRPC Unavailable (code 14, e.g. "no leader")
 * moves to the next endpoint; when every one failed, EtcdUnavailableError.
 */
import { EtcdUnavailableError, gatewayError, type EtcdError } from "./etcd-wire.ts";

export interface EtcdOptions {
  endpoints: string[];
  caPem?: string;
  certPem?: string;
  keyPem?: string;
  /** Per unary request (connect + reply), and per watch connect until the reply head. Default 5000. */
  requestTimeoutMs?: number;
}

const UNAVAILABLE = 14;
const DEFAULT_TIMEOUT_MS = 5000;

export class EtcdTransport {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  private readonly tls: BunFetchRequestInitTLS | undefined;
  /** The endpoint that answered last: requests start there, so a dead first endpoint costs once. */
  private preferred = 0;

  constructor(options: EtcdOptions) {
    if (options.endpoints.length === 0) throw new Error("etcd: no endpoints");
    this.endpoints = options.endpoints.map((e) => e.replace(/\/+$/, ""));
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const tls: BunFetchRequestInitTLS = {};
    if (options.caPem !== undefined) tls.ca = options.caPem;
    if (options.certPem !== undefined) tls.cert = options.certPem;
    if (options.keyPem !== undefined) tls.key = options.keyPem;
    this.tls = Object.keys(tls).length > 0 ? tls : undefined;
  }

  /**
   * POSTs `body` and returns the parsed reply. A timed-out write may still have been applied by
   * the endpoint it was sent to; retrying it on the next one is what failover means here, so a
   * compare-and-swap retried that way can report a conflict with its own write.
   */
  async call<T>(path: string, body: unknown): Promise<T> {
    const payload = JSON.stringify(body);
    const failures: string[] = [];
    for (let i = 0; i < this.endpoints.length; i++) {
      const index = (this.preferred + i) % this.endpoints.length;
      const endpoint = this.endpoints[index]!;
      let status: number;
      let text: string;
      try {
        const response = await fetch(endpoint + path, this.init(payload, AbortSignal.timeout(this.timeoutMs)));
        status = response.status;
        text = await response.text();
      } catch (error) {
        failures.push(`${endpoint}: ${describe(error)}`);
        continue;
      }
      if (status < 200 || status > 299) {
        const error: EtcdError = gatewayError(status, text);
        if (error.code === UNAVAILABLE) {
          failures.push(`${endpoint}: ${error.message}`);
          continue;
        }
        throw error;
      }
      this.preferred = index;
      return JSON.parse(text) as T;
    }
    throw new EtcdUnavailableError(`etcd unavailable: ${failures.join("; ")}`);
  }

  /** The endpoint a stream should try after `index` failed (and the one to start with). */
  next(index?: number): number {
    return index === undefined ? this.preferred : (index + 1) % this.endpoints.length;
  }

  /** Opens a streaming POST on one endpoint; the caller owns `signal` (aborting it ends the stream). */
  async open(index: number, path: string, body: unknown, signal: AbortSignal): Promise<Response> {
    const endpoint = this.endpoints[index]!;
    // The timeout covers the reply head only: the body of a watch stays open for as long as it lives.
    const timer = setTimeout(() => headTimeout.abort(new Error(`no reply within ${this.timeoutMs} ms`)), this.timeoutMs);
    const headTimeout = new AbortController();
    try {
      const response = await fetch(endpoint + path, this.init(JSON.stringify(body), AbortSignal.any([signal, headTimeout.signal])));
      if (response.status < 200 || response.status > 299) throw gatewayError(response.status, await response.text());
      this.preferred = index;
      return response;
    } catch (error) {
      if (headTimeout.signal.aborted) throw new EtcdUnavailableError(`${endpoint}: ${describe(headTimeout.signal.reason)}`);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private init(body: string, signal: AbortSignal): BunFetchRequestInit {
    const init: BunFetchRequestInit = { method: "POST", body, signal, headers: { "content-type": "application/json" } };
    if (this.tls) init.tls = this.tls;
    return init;
  }
}

export function describe(error: unknown): string {
  if (error instanceof Error) return error.name === "TimeoutError" ? "timed out" : error.message;
  return String(error);
}
