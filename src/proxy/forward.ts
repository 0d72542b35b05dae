import { clusterTarget, type ClusterTransport } from "./cluster-transport.ts";
import type { UpgradedConnection } from "./http1-client.ts";
import type { ImpersonationHeaders } from "../auth/identity.ts";
import { impersonationHeaderLines } from "./upstream-headers.ts";
import type { FramedRequest } from "../core/request-context.ts";
import { ApiError } from "../core/status.ts";
import { replyToResponse, responseToReply, type ClusterReply } from "./cluster-reply.ts";

/** Error codes reported for a TLS failure toward the cluster (certificate or handshake). */
function isTlsFailure(code: string, message: string): boolean {
  return code === "TLS" || /CERT|SSL|TLS|SELF_SIGNED|ALTNAME|HANDSHAKE|UNABLE_TO_(GET|VERIFY)|DEPTH_ZERO/i.test(code) || /certificate|tls|ssl|handshake/i.test(message);
}

const unavailable = (message: string, retryAfterSeconds?: number) =>
  new ApiError(503, "ServiceUnavailable", message, retryAfterSeconds === undefined ? undefined : { retryAfterSeconds });

/** Turns a failed exchange with a cluster into the Status the caller sees, naming the cluster and the cause. */
export function upstreamFailure(cluster: string, error: unknown, timedOut: boolean, usesClientCertificate = false): ApiError {
  if (error instanceof ApiError) return error;
  const e = error as { code?: string; message?: string };
  const code = e?.code ?? "";
  if (timedOut || code === "CONNECT_TIMEOUT") return unavailable(`cluster "${cluster}" is unreachable: ${code === "CONNECT_TIMEOUT" ? e.message : "no response within the connect timeout"}`);
  if (code === "HEAD_TIMEOUT") return new ApiError(504, "Timeout", `cluster "${cluster}" did not answer in time: ${e.message}`);
  if (code === "EMFILE" || code === "ENFILE") return unavailable(`kpass cannot open another connection to cluster "${cluster}": out of file descriptors (${e.message})`, 5);
  if (code === "PROTOCOL") return new ApiError(502, "BadGateway", `cluster "${cluster}" sent an invalid response: ${e.message}`);
  // Bun appends advice about its own `verbose` option, which means nothing to a kubectl user.
  const message = (e?.message ?? String(error)).replace(/\s*For more information, pass `verbose: true`.*$/s, "");
  if (isTlsFailure(code, message)) {
    return new ApiError(502, "BadGateway", `TLS handshake with cluster "${cluster}" failed: ${code === "TLS" ? message : code || message}`);
  }
  const cause = message.startsWith(code) || code === "CLOSED" ? message : `${code ? `${code}: ` : ""}${message}`;
  // With TLS 1.3 a server refuses a client certificate after the handshake: the client sees a reset.
  const hint = usesClientCertificate && /ECONNRESET|closed/i.test(cause) ? " (the cluster may have rejected kpass's client certificate)" : "";
  // No Retry-After: client-go would retry a dead cluster ten times before telling the user.
  return unavailable(`cluster "${cluster}" is unreachable: ${cause}${hint}`);
}

export interface ForwardOptions {
  transport: ClusterTransport;
  path: string;
  search: string;
  headers: Headers;
  /** Longest wait for the cluster's response head when the request names no `?timeout=`. */
  headerTimeoutMs: number;
  /** A watch or a followed log: no deadline at all. */
  streaming: boolean;
  impersonate?: ImpersonationHeaders;
  /** Ends the exchange (defaults to the client's request signal). */
  signal?: AbortSignal;
}

/** Whether a proxied request is a long-lived stream (watch, `logs -f`). */
export function isStreaming(verb: string, search: string): boolean {
  if (verb === "watch") return true;
  if (search === "") return false;
  // As apimachinery reads a bool parameter: anything but absent, "0" or "false" is true.
  const follow = new URLSearchParams(search).get("follow");
  return follow !== null && follow !== "0" && follow.toLowerCase() !== "false";
}

/** A Go duration as kube-apiserver reads `?timeout=` ("30s", "1m30s", "500ms"); undefined if absent or invalid. */
export function requestTimeoutMs(search: string): number | undefined {
  if (search === "") return undefined;
  const raw = new URLSearchParams(search).get("timeout");
  if (!raw) return undefined;
  const parts = [...raw.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== raw) return undefined;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2]!]!, 0);
}


/** The response-head deadline of one request: its own `?timeout=`, else kpass's; none for streams. */
function headDeadline(options: ForwardOptions): number | undefined {
  if (options.streaming) return undefined;
  return requestTimeoutMs(options.search) ?? options.headerTimeoutMs;
}

/**
 * Sends `req` to the cluster and hands back its answer untouched (no decompression, no
 * buffering). The upstream request dies with the client's: `req.signal` aborts it at once.
 */
export function forwardRequest(req: FramedRequest, options: ForwardOptions): Promise<ClusterReply> {
  const { transport } = options;
  if (transport.proxyURL) return forwardThroughProxy(req, options);
  const hasBody = req.body !== null && req.method !== "GET" && req.method !== "HEAD";
  const length = hasBody ? req.headers.get("content-length") : null;
  return transport.pool
    .request({
      method: req.method,
      target: clusterTarget(transport, options.path, options.search),
      headers: options.headers,
      impersonation: options.impersonate && impersonationHeaderLines(options.impersonate),
      body: hasBody ? req.body : null,
      bodyLength: hasBody && length !== null ? Number(length) : undefined,
      signal: options.signal ?? req.signal,
      headTimeoutMs: headDeadline(options),
    })
    .then(
      (answer) => answer.reply,
      (error: unknown) => {
        throw upstreamFailure(transport.cluster, error, false, transport.tls.cert !== undefined);
      },
    );
}

/**
 * Sends an upgrade request; resolves with the cluster's answer. On `101` the connection is
 * handed over, otherwise the cluster's complete response is returned (and its connection closed).
 */
export async function forwardUpgrade(options: { transport: ClusterTransport; method: string; path: string; search: string; headers: Headers; headerTimeoutMs: number; impersonate?: ImpersonationHeaders }): Promise<{ response: Response; upgraded?: UpgradedConnection }> {
  const { transport } = options;
  try {
    const { reply, upgraded } = await transport.pool.request({
      method: options.method,
      target: clusterTarget(transport, options.path, options.search),
      headers: options.headers,
      impersonation: options.impersonate && impersonationHeaderLines(options.impersonate),
      upgrade: true,
      headTimeoutMs: options.headerTimeoutMs,
    });
    return { response: replyToResponse(reply), upgraded };
  } catch (error) {
    throw upstreamFailure(transport.cluster, error, false, transport.tls.cert !== undefined);
  }
}

/** Clusters behind an HTTP proxy go through Bun's fetch, which speaks CONNECT. */
async function forwardThroughProxy(req: FramedRequest, options: ForwardOptions): Promise<ClusterReply> {
  const { transport } = options;
  const url = `${transport.endpoint.origin}${clusterTarget(transport, options.path, options.search)}`;
  const upstreamAbort = new AbortController();
  const onClientAbort = () => upstreamAbort.abort();
  const clientSignal = options.signal ?? req.signal;
  clientSignal.addEventListener("abort", onClientAbort, { once: true });
  let timedOut = false;
  const deadline = headDeadline(options);
  const timer = deadline === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    upstreamAbort.abort();
  }, deadline);
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
      timeout: options.streaming ? false : true,
    } as RequestInit);
  } catch (error) {
    clientSignal.removeEventListener("abort", onClientAbort);
    if (timedOut) throw new ApiError(504, "Timeout", `cluster "${transport.cluster}" did not answer in time: no response head within ${Math.round(deadline! / 1000)}s`);
    throw upstreamFailure(transport.cluster, error, false, transport.tls.cert !== undefined);
  } finally {
    clearTimeout(timer);
  }
  return responseToReply(upstream);
}

