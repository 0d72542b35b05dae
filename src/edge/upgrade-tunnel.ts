import { ApiError, asApiError, badRequest, statusResponse } from "../core/status.ts";
import type { RequestContext } from "../core/request-context.ts";
import type { Admitted, ClusterAdmission } from "../proxy/cluster-admission.ts";
import { forwardUpgrade } from "../proxy/forward.ts";
import type { ProxyTarget } from "../proxy/proxy-path.ts";
import type { UpgradeClient, UpgradeHandler } from "./connection.ts";
import { isTunnelProtocol, type RequestHead } from "./request-head.ts";

export interface TunnelOptions {
  admission: ClusterAdmission;
  /** Longest wait for the cluster's answer (101 or not) to an upgrade request. */
  headerTimeoutMs: number;
}

/** Cluster paths that switch protocols: exec, attach, port-forward and the pod/service/node proxy. */
const UPGRADABLE = [
  /^\/api\/v1\/namespaces\/[^/]+\/pods\/[^/]+\/(exec|attach|portforward)$/,
  /^\/api\/v1\/namespaces\/[^/]+\/(pods|services)\/[^/]+\/proxy(\/.*)?$/,
  /^\/api\/v1\/nodes\/[^/]+\/proxy(\/.*)?$/,
];

/** What must never be tunnelled is refused before anything is authenticated or sent. */
function checkHead(head: RequestHead): void {
  const protocol = head.headers.get("upgrade") ?? "";
  if (!isTunnelProtocol(protocol)) throw badRequest(`unsupported upgrade protocol "${protocol.slice(0, 64)}": kpass tunnels SPDY/3.1 and websocket only`);
  if (head.body.kind !== "none" || head.headers.has("transfer-encoding")) throw badRequest("an upgrade request must not carry a body");
}

function checkTarget(target: ProxyTarget | undefined): void {
  if (!target || !UPGRADABLE.some((re) => re.test(target.path))) {
    throw badRequest("only exec, attach, portforward and the pod, service and node proxy can be upgraded");
  }
}

/** Joins the client to the cluster's 101; revoking the pass closes the tunnel (the client reconnects and is authorized anew). */
function join(admission: ClusterAdmission, admitted: Admitted, client: UpgradeClient, upgraded: NonNullable<Awaited<ReturnType<typeof forwardUpgrade>>["upgraded"]>): void {
  const tunnel = client.tunnel(upgraded);
  admitted.lease?.signal.addEventListener("abort", () => upgraded.close(), { once: true });
  const closed = admission.tunnelling(admitted, () => ({ bytesIn: tunnel.bytesIn(), bytesOut: tunnel.bytesOut() }));
  tunnel.onClose(() => {
    closed();
    admitted.lease?.release();
    admission.finished(admitted, { status: 101, bytesIn: tunnel.bytesIn(), bytesOut: tunnel.bytesOut() });
  });
}

/**
 * Upgrade requests (exec, attach, port-forward over SPDY/3.1 or WebSocket): admitted exactly like
 * REST requests; the rewritten head goes to the cluster, and client bytes flow only after the
 * cluster answered `101`. Any other answer is relayed as a complete response and both connections close.
 */
export function createUpgradeHandler(options: TunnelOptions): UpgradeHandler {
  const { admission } = options;
  return async function upgrade(head: RequestHead, context: RequestContext, client: UpgradeClient): Promise<void> {
    let admitted: Admitted;
    try {
      admitted = await admission.admit(
        { target: head.target, method: head.method, headers: head.headers, rawHeaders: head.rawHeaders, upgrade: true, sourceIP: context.sourceIP, clientCertificate: context.clientCertificate },
        {
          beforeParse: () => checkHead(head),
          onTarget: checkTarget,
          afterPlan: (plan) => {
            if (plan.transport.proxyURL) throw new ApiError(502, "BadGateway", `cluster "${plan.cluster.metadata.name}" is reached through proxyURL, which kpass does not support for exec, attach and port-forward yet`);
          },
          holdsStream: () => true,
        },
      );
    } catch (error) {
      return client.respond(statusResponse(asApiError(error)));
    }
    const { plan } = admitted;
    let answer: Awaited<ReturnType<typeof forwardUpgrade>>;
    try {
      answer = await forwardUpgrade({ transport: plan.transport, method: head.method, path: plan.target.path, search: plan.target.search, headers: plan.headers, headerTimeoutMs: options.headerTimeoutMs, impersonate: plan.decision.impersonate });
    } catch (error) {
      admitted.lease?.release();
      const failure = asApiError(error);
      admission.finished(admitted, { status: failure.code, bytesIn: 0, bytesOut: 0, message: failure.message });
      return client.respond(statusResponse(failure));
    }
    if (!answer.upgraded) {
      admitted.lease?.release();
      admission.finished(admitted, { status: answer.response.status, bytesIn: 0, bytesOut: 0 });
      return client.respond(answer.response);
    }
    join(admission, admitted, client, answer.upgraded);
  };
}
