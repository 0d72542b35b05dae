/**
 * The request handler behind the edge, in the order every request meets it: health and version
 * (no credential), cluster-bound requests (admitted and forwarded by the REST proxy), and then
 * kpass's own API after authentication. Every error becomes a Status response here.
 */
import type { KpassApi } from "../api/router.ts";
import type { Authenticator } from "../auth/authenticate.ts";
import { authorizeDelegatedApi } from "../auth/kpass-access.ts";
import type { RequestContext } from "../core/request-context.ts";
import { asApiError, statusResponse } from "../core/status.ts";
import { versionInfo } from "../api/discovery.ts";
import { isProxyTarget } from "../proxy/proxy-path.ts";

export type ApiRequestContext = Pick<RequestContext, "target" | "sourceIP"> & Partial<Pick<RequestContext, "onFinished" | "rawHeaders" | "clientCertificate">>;

export interface HandlerDeps {
  authenticator: Authenticator;
  proxy: (req: Request, context: ApiRequestContext) => Promise<Response>;
  api: KpassApi;
  /** Sees the status of every response. */
  observe?: (status: number) => void;
  /** False once shutdown began: /readyz says so first, so load balancers stop sending. */
  ready?: () => boolean;
}

export function createHandler(deps: HandlerDeps): (req: Request, context: ApiRequestContext) => Promise<Response> {
  async function route(req: Request, context: ApiRequestContext): Promise<Response> {
    const path = context.target.split("?")[0]!;
    switch (path) {
      case "/readyz":
        if (deps.ready && !deps.ready()) return new Response("shutting down", { status: 503, headers: { "content-type": "text/plain" } });
        return new Response("ok", { headers: { "content-type": "text/plain" } });
      case "/healthz":
      case "/livez":
        return new Response("ok", { headers: { "content-type": "text/plain" } });
      case "/version":
        return Response.json(versionInfo());
    }
    if (isProxyTarget(context.target)) return deps.proxy(req, context);
    const { identity, certificate } = await deps.authenticator.authenticateRequest(req.headers, context.clientCertificate, context.rawHeaders);
    if (identity.delegated) await authorizeDelegatedApi(identity, req.method, path, context.target.slice(path.length + 1));
    return deps.api(req, identity, path, { sourceIP: context.sourceIP, clientCertificateSerial: certificate?.serial, credentialNotAfter: certificate?.notAfter });
  }

  return async function handle(req, context) {
    let response: Response;
    try {
      response = await route(req, context);
    } catch (error) {
      response = statusResponse(asApiError(error));
    }
    deps.observe?.(response.status);
    return response;
  };
}
