import type { Authenticator } from "../auth/authenticate.ts";
import type { Identity } from "../auth/identity.ts";
import { forwardRequest, isStreaming } from "../proxy/forward.ts";
import { parseProxyTarget } from "../proxy/proxy-path.ts";
import { admitProxied } from "../proxy/admission.ts";
import { planProxy, type ProxyDeps } from "../proxy/plan.ts";
import type { StoredObject } from "../store/object.ts";
import { apiGroup, apiGroupList, apiResourceList, apiVersions, OPENAPI_V2_PROTOBUF, openApiV2Protobuf, openApiV3Document, openApiV3Index, versionInfo } from "./discovery.ts";
import { GROUP, VERSION, type KindDefinition } from "./kind.ts";
import { create, listOrWatch, patch, read, remove, replace, type KindEndpoint } from "./rest.ts";
import { ApiError, asApiError, methodNotAllowed, pathNotFound, statusResponse } from "./status.ts";

export interface ApiDeps extends ProxyDeps {
  authenticator: Authenticator;
  endpoints: KindEndpoint<StoredObject>[];
  /** Longest wait for a cluster's response head. */
  upstreamHeaderTimeoutMs: number;
  /** Extra routes owned by other modules (e.g. kubeconfig generation), tried before the REST ones. */
  extraRoutes?: (req: Request, identity: Identity, path: string) => Promise<Response | undefined>;
  /** Sees every proxied request; may wrap the response (e.g. to count bytes for the audit log). */
  onProxied?: (event: ProxiedEvent) => Response | undefined;
  /** Sees every proxy request refused before it left kpass. */
  onRefused?: (target: string, identity: Identity | undefined, error: ApiError, source?: string) => void;
  metrics: () => string;
  /** Sees the status of every response. */
  observe?: (status: number) => void;
}

export interface ProxiedEvent {
  identity: Identity;
  req: Request;
  plan: ReturnType<typeof planProxy>;
  status: number;
  startedAt: number;
  response?: Response;
  /** The client's address as the edge saw it. */
  sourceIP?: string;
}

/** What the edge tells the API about a request beyond the Request itself. */
export interface ApiRequestContext {
  /** The raw request target, exactly as sent. */
  target: string;
  sourceIP: string;
  /** Runs once the response has been written or the client went away. */
  onFinished?(callback: () => void): void;
}

const GROUP_PREFIX = `/apis/${GROUP}/${VERSION}`;

function parseProxyTargetSafe(target: string): boolean {
  try {
    return parseProxyTarget(target) !== undefined;
  } catch {
    return true;
  }
}

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

/** Builds the request handler behind the edge: discovery, kpass objects, and the cluster proxy. */
export function createApiHandler(deps: ApiDeps): (req: Request, context: ApiRequestContext) => Promise<Response> {
  const kinds = deps.endpoints.map((e) => e.kind as KindDefinition<StoredObject>);
  const byPlural = new Map(deps.endpoints.map((e) => [e.kind.plural, e]));

  async function proxy(req: Request, identity: Identity, context: ApiRequestContext): Promise<Response | undefined> {
    const target = context.target;
    const parsed = parseProxyTarget(target);
    if (!parsed) return undefined;
    let plan: ReturnType<typeof planProxy>;
    let streaming: boolean;
    let signal = req.signal;
    try {
      plan = planProxy(deps, identity, parsed, { method: req.method, headers: req.headers, upgrade: false });
      req = await admitProxied(req, identity, plan);
      streaming = isStreaming(plan.decision.attributes.verb, parsed.search);
      if (streaming && identity.openStream) {
        const lease = identity.openStream();
        if (context.onFinished) context.onFinished(lease.release);
        else req.signal.addEventListener("abort", lease.release, { once: true });
        signal = AbortSignal.any([req.signal, lease.signal]);
      }
    } catch (error) {
      deps.onRefused?.(target, identity, asApiError(error), context.sourceIP);
      throw error;
    }
    const startedAt = performance.now();
    try {
      const response = await forwardRequest(req, {
        transport: plan.transport,
        path: parsed.path,
        search: parsed.search,
        headers: plan.headers,
        headerTimeoutMs: deps.upstreamHeaderTimeoutMs,
        streaming,
        impersonate: plan.decision.impersonate,
        signal,
      });
      return deps.onProxied?.({ identity, req, plan, status: response.status, startedAt, response, sourceIP: context.sourceIP }) ?? response;
    } catch (error) {
      deps.onProxied?.({ identity, req, plan, status: asApiError(error).code, startedAt, sourceIP: context.sourceIP });
      throw error;
    }
  }

  function resources(req: Request, identity: Identity, path: string): Promise<Response> | Response {
    const parts = path.slice(GROUP_PREFIX.length + 1).split("/");
    const [plural, name, subresource, ...extra] = parts;
    const endpoint = plural ? byPlural.get(plural) : undefined;
    if (!endpoint || extra.length > 0 || name === "") throw pathNotFound(path);
    if (subresource !== undefined && subresource !== "status") throw pathNotFound(path);
    const method = req.method;
    if (name === undefined) {
      if (method === "GET") return listOrWatch(req, endpoint, identity);
      if (method === "POST") return create(req, endpoint, identity);
      throw methodNotAllowed(method, path);
    }
    const sub = subresource === "status" ? "status" : "";
    switch (method) {
      case "GET":
        return read(req, endpoint, name, identity);
      case "PUT":
        return replace(req, endpoint, name, identity, sub);
      case "PATCH":
        return patch(req, endpoint, name, identity, sub);
      case "DELETE":
        if (sub) throw methodNotAllowed(method, path);
        return remove(req, endpoint, name, identity);
      default:
        throw methodNotAllowed(method, path);
    }
  }

  async function authenticated(req: Request, path: string, context: ApiRequestContext): Promise<Response> {
    let identity: Identity;
    try {
      identity = await deps.authenticator.authenticate(req.headers);
    } catch (error) {
      // Refused proxy requests are audited whatever refused them, as on the upgrade path.
      if (parseProxyTargetSafe(context.target)) deps.onRefused?.(context.target, undefined, asApiError(error), context.sourceIP);
      throw error;
    }
    const proxied = await proxy(req, identity, context);
    if (proxied) return proxied;
    const extra = await deps.extraRoutes?.(req, identity, path);
    if (extra) return extra;
    if (req.method !== "GET" && !path.startsWith(GROUP_PREFIX + "/")) throw methodNotAllowed(req.method, path);
    switch (path) {
      case "/api":
        return json(apiVersions());
      case "/apis":
        return json(apiGroupList());
      case `/apis/${GROUP}`:
        return json(apiGroup());
      case GROUP_PREFIX:
        return json(apiResourceList(kinds));
      case "/openapi/v2":
        return new Response(openApiV2Protobuf(), { headers: { "content-type": OPENAPI_V2_PROTOBUF } });
      case "/openapi/v3":
        return json(openApiV3Index());
      case `/openapi/v3/apis/${GROUP}/${VERSION}`:
        return json(openApiV3Document(kinds));
      case "/metrics":
        if (!identity.isAdmin) throw new ApiError(403, "Forbidden", `pass "${identity.pass}" may not read metrics`);
        return new Response(deps.metrics(), { headers: { "content-type": "text/plain; version=0.0.4" } });
    }
    if (path.startsWith(GROUP_PREFIX + "/")) return resources(req, identity, path);
    throw pathNotFound(path);
  }

  return async function handle(req: Request, context: ApiRequestContext): Promise<Response> {
    const response = await route(req, context);
    deps.observe?.(response.status);
    return response;
  };

  async function route(req: Request, context: ApiRequestContext): Promise<Response> {
    try {
      const path = context.target.split("?")[0]!;
      switch (path) {
        case "/healthz":
        case "/livez":
        case "/readyz":
          return new Response("ok", { headers: { "content-type": "text/plain" } });
        case "/version":
          return json(versionInfo());
      }
      return await authenticated(req, path, context);
    } catch (error) {
      return statusResponse(asApiError(error));
    }
  }
}
