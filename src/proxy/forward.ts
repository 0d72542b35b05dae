import { ApiError } from "../api/status.ts";
import type { ClusterTransport } from "./cluster-transport.ts";

/** Response headers that belong to the upstream hop only (Content-Length is kept: the body is passed as is). */
const RESPONSE_HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"];

/** Error codes Bun reports for a TLS failure toward the cluster (certificate or handshake). */
function isTlsFailure(code: string, message: string): boolean {
  return /CERT|SSL|TLS|SELF_SIGNED|ALTNAME|HANDSHAKE|UNABLE_TO_(GET|VERIFY)|DEPTH_ZERO/i.test(code) || /certificate|tls|ssl|handshake/i.test(message);
}

/** Turns a failed upstream fetch into the Status the caller sees, naming the cluster and the cause. */
export function upstreamFailure(cluster: string, error: unknown, timedOut: boolean, usesClientCertificate = false): ApiError {
  if (timedOut) return new ApiError(503, "ServiceUnavailable", `cluster "${cluster}" is unreachable: no response within the connect timeout`);
  const e = error as { code?: string; message?: string };
  const code = e?.code ?? "";
  // Bun appends advice about its own `verbose` option, which means nothing to a kubectl user.
  const message = (e?.message ?? String(error)).replace(/\s*For more information, pass `verbose: true`.*$/s, "");
  if (isTlsFailure(code, message)) {
    return new ApiError(502, "BadGateway", `TLS handshake with cluster "${cluster}" failed: ${code || message}`);
  }
  const cause = message.startsWith(code) ? message : `${code ? `${code}: ` : ""}${message}`;
  // With TLS 1.3 a server refuses a client certificate after the handshake: the client sees a reset.
  const hint = usesClientCertificate && /ECONNRESET|closed unexpectedly/i.test(cause) ? " (the cluster may have rejected kpass's client certificate)" : "";
  return new ApiError(503, "ServiceUnavailable", `cluster "${cluster}" is unreachable: ${cause}${hint}`);
}

export interface ForwardOptions {
  transport: ClusterTransport;
  path: string;
  search: string;
  headers: Headers;
  /** Longest wait for the cluster's response head; the body then streams without a deadline. */
  headerTimeoutMs: number;
  /** A watch or a followed log: may stay silent for long, so no idle timeout applies. */
  streaming: boolean;
}

/** Whether a proxied request is a long-lived stream (watch, `logs -f`). */
export function isStreaming(verb: string, search: string): boolean {
  if (verb === "watch") return true;
  return /[?&]follow=(true|1)(&|$)/.test(search);
}

/**
 * Sends `req` to the cluster and streams the answer back untouched (no decompression, no
 * buffering). The upstream request dies with the client's: `req.signal` aborts it at once.
 */
export async function forwardRequest(req: Request, options: ForwardOptions): Promise<Response> {
  const { transport } = options;
  const base = transport.endpoint.pathname.replace(/\/$/, "");
  const url = `${transport.endpoint.origin}${base}${options.path}${options.search}`;
  const upstreamAbort = new AbortController();
  const onClientAbort = () => upstreamAbort.abort();
  req.signal.addEventListener("abort", onClientAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    upstreamAbort.abort();
  }, options.headerTimeoutMs);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  let upstream: Response;
  try {
    upstream = await transport.fetch(url, {
      method: req.method,
      headers: options.headers,
      body: hasBody ? req.body : undefined,
      redirect: "manual",
      signal: upstreamAbort.signal,
      decompress: false,
      duplex: "half",
      // Bun's fetch closes a connection idle for 5 minutes; a quiet watch must outlive that.
      timeout: options.streaming ? false : true,
    } as RequestInit);
  } catch (error) {
    req.signal.removeEventListener("abort", onClientAbort);
    throw upstreamFailure(transport.cluster, error, timedOut, transport.tls.cert !== undefined);
  } finally {
    clearTimeout(timer);
  }
  // Bun lets a fetched response's headers change; passing the response itself keeps the body on
  // Bun's native path.
  for (const name of RESPONSE_HOP_BY_HOP) upstream.headers.delete(name);
  return upstream;
}
