import type { StoredObject } from "../core/object.ts";
import type { KindDefinition } from "./kind.ts";
import { toOpenApi } from "./schema.ts";
import { API_VERSION, GROUP, VERSION } from "../core/api-group.ts";

import { KPASS_VERSION } from "../core/version.ts";

export function versionInfo(): Record<string, string> {
  return {
    major: "0",
    minor: "1",
    gitVersion: `v${KPASS_VERSION}+kpass`,
    gitCommit: "",
    gitTreeState: "clean",
    buildDate: "",
    goVersion: `bun ${Bun.version}`,
    compiler: "bun",
    platform: `${process.platform}/${process.arch}`,
  };
}

export function apiVersions(): Record<string, unknown> {
  return { kind: "APIVersions", versions: [], serverAddressByClientCIDRs: [] };
}

function groupVersion(): Record<string, string> {
  return { groupVersion: API_VERSION, version: VERSION };
}

export function apiGroup(): Record<string, unknown> {
  return { kind: "APIGroup", apiVersion: "v1", name: GROUP, versions: [groupVersion()], preferredVersion: groupVersion() };
}

export function apiGroupList(): Record<string, unknown> {
  return { kind: "APIGroupList", apiVersion: "v1", groups: [apiGroup()] };
}

const VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"];
const SUBRESOURCE_VERBS: Record<string, string[]> = {
  status: ["get", "patch", "update"],
  proxy: ["create", "delete", "get", "patch", "update"],
  kubeconfig: ["get"],
  certificate: ["create"],
};

export function apiResourceList(kinds: KindDefinition<StoredObject>[]): Record<string, unknown> {
  const resources = kinds.flatMap((k) => [
    { name: k.plural, singularName: k.singular, namespaced: false, kind: k.kind, verbs: VERBS, shortNames: k.shortNames, categories: ["kpass"] },
    ...k.subresources.map((sub) => ({ name: `${k.plural}/${sub}`, singularName: "", namespaced: false, kind: k.kind, verbs: SUBRESOURCE_VERBS[sub] ?? ["get"] })),
  ]);
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion: API_VERSION, resources };
}

/** The OpenAPI v3 index kubectl reads to learn that kpass validates fields server-side. */
export function openApiV3Index(): Record<string, unknown> {
  return { paths: { [`apis/${GROUP}/${VERSION}`]: { serverRelativeURL: `/openapi/v3/apis/${GROUP}/${VERSION}?hash=${KPASS_VERSION}` } } };
}

const queryParameter = (name: string, description: string) => ({ name, in: "query", description, schema: { type: "string" }, uniqueItems: true });

/**
 * A per-group OpenAPI v3 document. kubectl's field-validation probe looks for a PATCH operation
 * tagged with the kind's group/version/kind that lists `fieldValidation`; `dryRun` likewise.
 */
export function openApiV3Document(kinds: KindDefinition<StoredObject>[]): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  for (const k of kinds) {
    const gvk = [{ group: GROUP, version: VERSION, kind: k.kind }];
    const ref = { $ref: `#/components/schemas/dev.kpass.cluster.${VERSION}.${k.kind}` };
    const body = { content: { "application/json": { schema: ref } } };
    const ok = { "200": { description: "OK", content: { "application/json": { schema: ref } } } };
    const writeParams = [queryParameter("dryRun", "When present, do not persist"), queryParameter("fieldValidation", "Ignore, Warn or Strict handling of unknown fields"), queryParameter("fieldManager", "Name of the actor making the change")];
    const extensions = { "x-kubernetes-group-version-kind": gvk[0] };
    paths[`/apis/${GROUP}/${VERSION}/${k.plural}`] = {
      get: { operationId: `list${k.kind}`, responses: ok, "x-kubernetes-action": "list", ...extensions },
      post: { operationId: `create${k.kind}`, requestBody: body, parameters: writeParams, responses: ok, "x-kubernetes-action": "post", ...extensions },
    };
    paths[`/apis/${GROUP}/${VERSION}/${k.plural}/{name}`] = {
      parameters: [{ name: "name", in: "path", required: true, schema: { type: "string" } }],
      get: { operationId: `read${k.kind}`, responses: ok, "x-kubernetes-action": "get", ...extensions },
      put: { operationId: `replace${k.kind}`, requestBody: body, parameters: writeParams, responses: ok, "x-kubernetes-action": "put", ...extensions },
      patch: {
        operationId: `patch${k.kind}`,
        requestBody: { content: { "application/merge-patch+json": { schema: { type: "object" } }, "application/json-patch+json": { schema: { type: "array" } } } },
        parameters: writeParams,
        responses: ok,
        "x-kubernetes-action": "patch",
        ...extensions,
      },
      delete: { operationId: `delete${k.kind}`, parameters: [queryParameter("dryRun", "When present, do not persist")], responses: ok, "x-kubernetes-action": "delete", ...extensions },
    };
    schemas[`dev.kpass.cluster.${VERSION}.${k.kind}`] = { ...toOpenApi(k.schema), "x-kubernetes-group-version-kind": gvk };
  }
  return { openapi: "3.0.0", info: { title: "kpass", version: KPASS_VERSION }, paths, components: { schemas } };
}

/**
 * The OpenAPI v2 document as kubectl ≤1.28 downloads it (protobuf only). It declares nothing but
 * `swagger: "2.0"`: kubectl then finds no model for kpass kinds, skips client-side schema checks
 * and relies on the server's own strict field validation, which kpass does.
 */
export function openApiV2Protobuf(): Uint8Array {
  const version = new TextEncoder().encode("2.0");
  // Field 1 (swagger), wire type 2 (length-delimited).
  return Uint8Array.from([0x0a, version.length, ...version]);
}

/** As kube-apiserver labels it: Go rejects the "@" of the Accept spelling in a Content-Type. */
export const OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
