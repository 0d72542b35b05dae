/** kpass's own API behind authentication: discovery, OpenAPI, Clusters, Passes, kubeconfigs, metrics. */
import type { Identity } from "../auth/identity.ts";
import { authorizeMetrics } from "../auth/kpass-access.ts";
import { GROUP, GROUP_PREFIX, VERSION } from "../core/api-group.ts";
import type { StoredObject } from "../core/object.ts";
import { methodNotAllowed, pathNotFound } from "../core/status.ts";
import { apiGroup, apiGroupList, apiResourceList, apiVersions, OPENAPI_V2_PROTOBUF, openApiV2Protobuf, openApiV3Document, openApiV3Index } from "./discovery.ts";
import type { KindDefinition } from "./kind.ts";
import type { Kubeconfigs } from "./kubeconfigs.ts";
import type { ApiCaller, PassCertificates } from "./pass-certificates.ts";
import type { SelfReviews } from "./self-reviews.ts";
import { create, listOrWatch, patch, read, remove, replace, type KindEndpoint } from "./rest.ts";

export interface KpassApiDeps {
  endpoints: KindEndpoint<StoredObject>[];
  kubeconfigs: Kubeconfigs;
  /** `passes/{name}/certificate`; absent: kpass issues no client certificates. */
  passCertificates?: PassCertificates;
  selfReviews: SelfReviews;
  /** The Prometheus exposition for /metrics. */
  metrics(): Promise<{ text: string; contentType: string }>;
}

export type KpassApi = (req: Request, identity: Identity, path: string, caller?: ApiCaller) => Promise<Response> | Response;

function json(body: unknown): Response {
  return Response.json(body);
}

/** GET-only documents: discovery and OpenAPI; undefined for any other path. */
function documents(path: string, kinds: KindDefinition<StoredObject>[]): Response | undefined {
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
  }
  return undefined;
}

/** `/apis/cluster.kpass.dev/v1beta1/{plural}[/{name}[/status]]` by method. */
function objects(req: Request, identity: Identity, path: string, byPlural: Map<string, KindEndpoint<StoredObject>>, notAfter?: number): Promise<Response> | Response {
  const [plural, name, subresource, ...extra] = path.slice(GROUP_PREFIX.length + 1).split("/");
  const endpoint = plural ? byPlural.get(plural) : undefined;
  if (!endpoint || extra.length > 0 || name === "") throw pathNotFound(path);
  if (subresource !== undefined && subresource !== "status") throw pathNotFound(path);
  const method = req.method;
  if (name === undefined) {
    if (method === "GET") return listOrWatch(req, endpoint, identity, notAfter);
    if (method === "POST") return create(req, endpoint, identity);
    throw methodNotAllowed(method, path);
  }
  const sub = subresource === "status" ? "status" : "";
  if (method === "GET") return read(req, endpoint, name, identity);
  if (method === "PUT") return replace(req, endpoint, name, identity, sub);
  if (method === "PATCH") return patch(req, endpoint, name, identity, sub);
  if (method === "DELETE" && !sub) return remove(req, endpoint, name, identity);
  throw methodNotAllowed(method, path);
}

export function createKpassApi(deps: KpassApiDeps): KpassApi {
  const kinds = deps.endpoints.map((e) => e.kind);
  const byPlural = new Map(deps.endpoints.map((e) => [e.kind.plural, e]));
  return async function serve(req, identity, path, caller) {
    const routed = (await deps.kubeconfigs.route(req, identity, path)) ?? (await deps.passCertificates?.route(req, identity, path, caller)) ?? (await deps.selfReviews.route(req, identity, path));
    if (routed) return routed;
    if (path.startsWith(GROUP_PREFIX + "/")) return objects(req, identity, path, byPlural, caller?.credentialNotAfter);
    if (req.method !== "GET") throw methodNotAllowed(req.method, path);
    if (path === "/metrics") {
      authorizeMetrics(identity);
      const { text, contentType } = await deps.metrics();
      return new Response(text, { headers: { "content-type": contentType } });
    }
    const document = documents(path, kinds);
    if (document) return document;
    throw pathNotFound(path);
  };
}
