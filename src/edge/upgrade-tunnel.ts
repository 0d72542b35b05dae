import { checkServerIdentity } from "node:tls";
import type { Socket, SocketHandler } from "bun";
import { ApiError, asApiError, pathNotFound } from "../api/status.ts";
import type { Authenticator } from "../auth/authenticate.ts";
import type { Identity } from "../auth/identity.ts";
import { upstreamFailure } from "../proxy/forward.ts";
import { parseProxyTarget } from "../proxy/proxy-path.ts";
import { planProxy, type ProxyDeps, type ProxyPlan } from "../proxy/plan.ts";
import type { ClientEnd, UpgradeHandler } from "./listener.ts";
import { HTTP11_ALPN, type RequestHead } from "./request-head.ts";
import { PipeEnd, pipeHandlers } from "./socket-pipe.ts";

export interface TunnelEvent {
  identity: Identity;
  plan: ProxyPlan;
  method: string;
  /** Bytes client→cluster and cluster→client over the tunnel's life. */
  bytesIn: number;
  bytesOut: number;
  startedAt: number;
  status: number;
}

export interface TunnelDeps extends ProxyDeps {
  authenticator: Authenticator;
  connectTimeoutMs: number;
  onTunnelClosed?: (event: TunnelEvent) => void;
  onRefused?: (target: string, identity: Identity | undefined, error: ApiError) => void;
}

/** The request head the cluster receives: its own path prefix, the whole query, kpass's headers. */
function upstreamHead(head: RequestHead, plan: ProxyPlan): Uint8Array {
  const endpoint = plan.transport.endpoint;
  const base = endpoint.pathname.replace(/\/$/, "");
  const lines = [`${head.method} ${base}${plan.target.path}${plan.target.search} HTTP/1.1`, `Host: ${endpoint.host}`];
  plan.headers.forEach((value, name) => lines.push(`${name}: ${value}`));
  return Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1");
}

/** Opens a TLS connection to the cluster (HTTP/1.1 only) and resolves once it is verified. */
function connectToCluster(plan: ProxyPlan, upstream: PipeEnd, timeoutMs: number): Promise<void> {
  const { endpoint, tls } = plan.transport;
  const hostname = endpoint.hostname.replace(/^\[|\]$/g, "");
  const port = Number(endpoint.port || 443);
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => settle(Object.assign(new Error("connect timeout"), { timedOut: true })), timeoutMs);
    const handlers: SocketHandler<PipeEnd> = {
        ...pipeHandlers,
        handshake(socket, success, authorizationError) {
          if (tls.rejectUnauthorized) {
            const identityError = success ? checkServerIdentity(tls.serverName ?? hostname, socket.getPeerCertificate()) : undefined;
            const failure = !success ? authorizationError ?? new Error("certificate verification failed") : identityError;
            if (failure) {
              settle(Object.assign(failure, { code: (failure as { code?: string }).code ?? "CERT_VERIFICATION_FAILED", tls: true }));
              socket.end();
              return;
            }
          }
          if (settled) {
            socket.end();
            return;
          }
          settle();
          upstream.attach(socket);
        },
        connectError(_socket, error) {
          settle(error);
        },
        close(socket) {
          if (!settled) settle(new Error("connection closed during TLS handshake"));
          pipeHandlers.close(socket);
        },
    };
    Bun.connect<PipeEnd>({
      hostname,
      port,
      data: upstream,
      // A cluster that ends its side (exit code sent) must not cut the client before it has read it all.
      allowHalfOpen: true,
      tls: { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized, serverName: tls.serverName ?? (/^[\d.:]+$/.test(hostname) ? undefined : hostname), ALPNProtocols: HTTP11_ALPN },
      socket: handlers,
    }).catch(settle);
  });
}

/**
 * Upgrade requests (exec, attach, port-forward over SPDY/3.1 or WebSocket): authenticated and
 * authorized exactly like REST requests, then the rewritten head is sent to the cluster and bytes
 * flow both ways untouched; the cluster's response (101 or an error) reaches the client as is.
 */
export function createUpgradeHandler(deps: TunnelDeps): UpgradeHandler {
  return async function upgrade(head: RequestHead, client: ClientEnd): Promise<void> {
    let identity: Identity | undefined;
    let plan: ProxyPlan;
    const startedAt = performance.now();
    try {
      const target = parseProxyTarget(head.target);
      if (!target) throw pathNotFound(head.target.split("?")[0]!);
      identity = await deps.authenticator.authenticate(head.headers);
      plan = planProxy(deps, identity, target, { method: head.method, headers: head.headers, upgrade: true });
      if (plan.transport.proxyURL) {
        throw new ApiError(502, "BadGateway", `cluster "${target.cluster}" is reached through proxyURL, which kpass does not support for exec, attach and port-forward yet`);
      }
    } catch (error) {
      const status = asApiError(error);
      deps.onRefused?.(head.target, identity, status);
      client.reject(status.code, JSON.stringify(status.toStatus()));
      return;
    }
    const upstream = new PipeEnd();
    upstream.write(upstreamHead(head, plan));
    const headBytes = upstream.bytesWritten;
    client.pipeTo(upstream, head.length);
    const who = identity;
    upstream.onClose = () =>
      deps.onTunnelClosed?.({ identity: who, plan, method: head.method, bytesIn: upstream.bytesWritten - headBytes, bytesOut: client.bytesWritten, startedAt, status: 101 });
    try {
      await connectToCluster(plan, upstream, deps.connectTimeoutMs);
    } catch (error) {
      const status = upstreamFailure(plan.transport.cluster, error, (error as { timedOut?: boolean }).timedOut === true, plan.transport.tls.cert !== undefined);
      upstream.onClose = undefined;
      upstream.closed = true;
      client.peer = undefined;
      deps.onRefused?.(head.target, identity, status);
      client.reject(status.code, JSON.stringify(status.toStatus()));
    }
  };
}

