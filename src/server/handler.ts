/**
 * The request handler behind the edge, in the order every request meets it: health and version
 * (no credential), cluster-bound requests (admitted and forwarded by the REST proxy), and then
 * kpass's own API after authentication. Every error becomes a Status response here.
 */
import type { StoreHealth } from "../store/backend.ts";
import type { KpassApi } from "../api/router.ts";
import type { Authenticator } from "../auth/authenticate.ts";
import { authorizeDelegatedApi } from "../auth/kpass-access.ts";
import type { FramedRequest, RequestContext } from "../core/request-context.ts";
import type { ClusterReply } from "../proxy/cluster-reply.ts";
import { asApiError, statusResponse } from "../core/status.ts";
import { versionInfo } from "../api/discovery.ts";
import { isProxyTarget } from "../proxy/proxy-path.ts";

export type ApiRequestContext = Pick<RequestContext, "target" | "sourceIP"> & Partial<Pick<RequestContext, "onFinished" | "rawHeaders" | "clientCertificate">>;

export interface HandlerDeps {
  authenticator: Authenticator;
  proxy: (req: FramedRequest, context: ApiRequestContext) => Promise<Response | ClusterReply>;
  api: KpassApi;
  /** Sees the status of every response. */
  observe?: (status: number) => void;
  /** False once shutdown began: /readyz says so first, so load balancers stop sending. */
  ready?: () => boolean;
  /** Whether the store takes writes now (etcd reachable); /readyz reports it. */
  storeHealth?: () => StoreHealth;
}

/**
 * /readyz: 503 once shutdown began. A store that cannot take writes (etcd unreachable) leaves kpass
 * ready — authentication, the proxy and reads are served from memory — and the body says so, so a
 * load balancer keeps the replica and an operator sees why writes fail.
 */
function readyz(deps: HandlerDeps): Response {
  const text = { "content-type": "text/plain; charset=utf-8" };
  if (deps.ready && !deps.ready()) return new Response("shutting down", { status: 503, headers: text });
  const store = deps.storeHealth?.();
  if (!store || store.writable) return new Response("ok", { headers: text });
  return new Response(`[+]ping ok\n[-]store degraded: ${store.detail ?? "writes refused"}\nreadyz check passed: serving from memory\n`, { headers: text });
}

/** kpass's own API reads a web Request; the edge's framing becomes one only here. */
const API_BASE = "https://kpass.local";

export function createHandler(deps: HandlerDeps): (req: FramedRequest, context: ApiRequestContext) => Promise<Response | ClusterReply> {
  function route(req: FramedRequest, context: ApiRequestContext): Response | Promise<Response | ClusterReply> {
    const path = context.target.split("?")[0]!;
    switch (path) {
      case "/readyz":
        return readyz(deps);
      case "/healthz":
      case "/livez":
        return new Response("ok", { headers: { "content-type": "text/plain" } });
      case "/version":
        return Response.json(versionInfo());
    }
    if (isProxyTarget(context.target)) return deps.proxy(req, context);
    return api(req, context, path);
  }

  async function api(req: FramedRequest, context: ApiRequestContext, path: string): Promise<Response> {
    const { identity, certificate } = await deps.authenticator.authenticateRequest(req.headers, context.clientCertificate, context.rawHeaders);
    if (identity.delegated) await authorizeDelegatedApi(identity, req.method, path, context.target.slice(path.length + 1));
    const request = req instanceof Request ? req : new Request(API_BASE + context.target, { method: req.method, headers: req.headers, body: req.body, signal: req.signal, duplex: "half" } as RequestInit);
    return deps.api(request, identity, path, { sourceIP: context.sourceIP, clientCertificateSerial: certificate?.serial, credentialNotAfter: certificate?.notAfter });
  }

  const observed = (response: Response | ClusterReply): Response | ClusterReply => {
    deps.observe?.(response.status);
    return response;
  };
  const failed = (error: unknown) => observed(statusResponse(asApiError(error)));
  return function handle(req, context) {
    let answer: Response | Promise<Response | ClusterReply>;
    try {
      answer = route(req, context);
    } catch (error) {
      return Promise.resolve(failed(error));
    }
    return answer instanceof Promise ? answer.then(observed, failed) : Promise.resolve(observed(answer));
  };
}
