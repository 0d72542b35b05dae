import { ApiError, asApiError, badRequest, statusResponse } from "../api/status.ts";
import type { Authenticator } from "../auth/authenticate.ts";
import type { Identity } from "../auth/identity.ts";
import { forwardUpgrade } from "../proxy/forward.ts";
import { parseProxyTarget, type ProxyTarget } from "../proxy/proxy-path.ts";
import { planProxy, type ProxyDeps, type ProxyPlan } from "../proxy/plan.ts";
import type { RequestContext, UpgradeClient, UpgradeHandler } from "./connection.ts";
import { isTunnelProtocol, type RequestHead } from "./request-head.ts";

export interface TunnelEvent {
  identity: Identity;
  plan: ProxyPlan;
  method: string;
  /** Bytes client→cluster and cluster→client over the tunnel's life. */
  bytesIn: number;
  bytesOut: number;
  startedAt: number;
  status: number;
  sourceIP?: string;
}

export interface TunnelDeps extends ProxyDeps {
  authenticator: Authenticator;
  /** Longest wait for the cluster's answer (101 or not) to an upgrade request. */
  headerTimeoutMs: number;
  onTunnelClosed?: (event: TunnelEvent) => void;
  onRefused?: (target: string, identity: Identity | undefined, error: ApiError, source?: string) => void;
}

/** Cluster paths that switch protocols: exec, attach, port-forward and the pod/service/node proxy. */
const UPGRADABLE = [
  /^\/api\/v1\/namespaces\/[^/]+\/pods\/[^/]+\/(exec|attach|portforward)$/,
  /^\/api\/v1\/namespaces\/[^/]+\/(pods|services)\/[^/]+\/proxy(\/.*)?$/,
  /^\/api\/v1\/nodes\/[^/]+\/proxy(\/.*)?$/,
];

/** Refuses what must never be tunnelled, before anything is authenticated or sent. */
function checkUpgrade(head: RequestHead): ProxyTarget {
  const protocol = head.headers.get("upgrade") ?? "";
  if (!isTunnelProtocol(protocol)) throw badRequest(`unsupported upgrade protocol "${protocol.slice(0, 64)}": kpass tunnels SPDY/3.1 and websocket only`);
  if (head.body.kind !== "none" || head.headers.has("transfer-encoding")) throw badRequest("an upgrade request must not carry a body");
  const target = parseProxyTarget(head.target);
  if (!target || !UPGRADABLE.some((re) => re.test(target.path))) {
    throw badRequest("only exec, attach, portforward and the pod, service and node proxy can be upgraded");
  }
  return target;
}

/**
 * Upgrade requests (exec, attach, port-forward over SPDY/3.1 or WebSocket): checked, then
 * authenticated and authorized exactly like REST requests; the rewritten head goes to the
 * cluster, and client bytes flow only after the cluster answered `101`. Any other answer is
 * relayed as a complete response and both connections close.
 */
export function createUpgradeHandler(deps: TunnelDeps): UpgradeHandler {
  return async function upgrade(head: RequestHead, context: RequestContext, client: UpgradeClient): Promise<void> {
    let identity: Identity | undefined;
    let plan: ProxyPlan;
    const startedAt = performance.now();
    const source = context.sourceIP;
    try {
      const target = checkUpgrade(head);
      identity = await deps.authenticator.authenticate(head.headers);
      plan = planProxy(deps, identity, target, { method: head.method, headers: head.headers, upgrade: true });
      if (plan.transport.proxyURL) {
        throw new ApiError(502, "BadGateway", `cluster "${target.cluster}" is reached through proxyURL, which kpass does not support for exec, attach and port-forward yet`);
      }
    } catch (error) {
      const status = asApiError(error);
      deps.onRefused?.(head.target, identity, status, source);
      return client.respond(statusResponse(status));
    }
    const who = identity;
    let lease: ReturnType<NonNullable<Identity["openStream"]>> | undefined;
    try {
      lease = who.openStream?.();
    } catch (error) {
      const status = asApiError(error);
      deps.onRefused?.(head.target, identity, status, source);
      return client.respond(statusResponse(status));
    }
    let answer: Awaited<ReturnType<typeof forwardUpgrade>>;
    try {
      answer = await forwardUpgrade({ transport: plan.transport, method: head.method, path: plan.target.path, search: plan.target.search, headers: plan.headers, headerTimeoutMs: deps.headerTimeoutMs, impersonate: plan.decision.impersonate });
    } catch (error) {
      lease?.release();
      const status = asApiError(error);
      deps.onRefused?.(head.target, identity, status, source);
      return client.respond(statusResponse(status));
    }
    const upgraded = answer.upgraded;
    if (!upgraded) {
      lease?.release();
      deps.onTunnelClosed?.({ identity: who, plan, method: head.method, bytesIn: 0, bytesOut: 0, startedAt, status: answer.response.status, sourceIP: source });
      return client.respond(answer.response);
    }
    const tunnel = client.tunnel(upgraded);
    // A revoked or edited pass closes its tunnels (the client reconnects and is authorized anew).
    lease?.signal.addEventListener("abort", () => upgraded.close(), { once: true });
    tunnel.onClose(() => {
      lease?.release();
      deps.onTunnelClosed?.({ identity: who, plan, method: head.method, bytesIn: tunnel.bytesIn(), bytesOut: tunnel.bytesOut(), startedAt, status: 101, sourceIP: source });
    });
  };
}
