import type { Identity } from "../auth/identity.ts";
import { authorizeWrite, canSee, seesCredentials, type KpassResource } from "../auth/kpass-access.ts";
import type { ObjectStore } from "../store/object-store.ts";
import { decodeContinue, encodeContinue } from "./continue-token.ts";
import { type StoredObject, isDnsSubdomain } from "../core/object.ts";
import { matchesLabels, parseLabelSelector, parseNameFieldSelector } from "../store/label-selector.ts";
import { readObjectBody, readPatchBody } from "./body.ts";
import type { KindDefinition } from "./kind.ts";
import { applyPatchDocument } from "./patch.ts";
import { prune } from "./schema.ts";
import { badRequest, invalid, notFound } from "../core/status.ts";
import { toTable, wantsTable } from "./table.ts";
import { watchResponse } from "./watch.ts";
import { API_VERSION, GROUP } from "../core/api-group.ts";

/** Seconds after which a watch with no timeoutSeconds of its own ends (randomised up to twice that). */
const MIN_REQUEST_TIMEOUT_SECONDS = 1800;

/** One kind served over REST: its definition, its store, and who may write it. */
export interface KindEndpoint<T extends StoredObject> {
  kind: KindDefinition<T>;
  store: ObjectStore<T>;
  /** What a create response carries beyond the object (e.g. a token shown once). */
  createdResponse?: (object: T) => Promise<Record<string, unknown>>;
}

function query(req: Request): URLSearchParams {
  return new URL(req.url).searchParams;
}

function isDryRun(req: Request): boolean {
  const dryRun = query(req).getAll("dryRun");
  if (dryRun.some((v) => v !== "All")) throw badRequest(`invalid dryRun value ${dryRun.join(",")}: only "All" is supported`);
  return dryRun.length > 0;
}

/** The object as `viewer` may see it: credentials only for those who may see them. */
function asSeenBy<T extends StoredObject>(kind: KindDefinition<T>, object: T, viewer: Identity): T {
  return seesCredentials(viewer) ? object : kind.redact(object);
}

function resourceOf(kind: KindDefinition<StoredObject>): KpassResource {
  return kind.plural as KpassResource;
}

/** Schema pruning per the fieldValidation query parameter (Strict / Warn / Ignore). */
function pruneBody<T extends StoredObject>(req: Request, kind: KindDefinition<T>, body: Record<string, unknown>, warnings: string[]): T {
  const mode = query(req).get("fieldValidation") ?? "Warn";
  if (!["Strict", "Warn", "Ignore"].includes(mode)) throw badRequest(`fieldValidation must be Strict, Warn or Ignore, got "${mode}"`);
  const { value, unknownFields, typeErrors } = prune(body, kind.schema, "");
  const name = String((body.metadata as { name?: unknown } | undefined)?.name ?? "");
  if (typeErrors.length > 0) throw invalid({ group: GROUP, kind: kind.kind }, name, typeErrors.map((e) => ({ field: e.field.replace(/^\./, ""), message: e.message, reason: "FieldValueTypeInvalid" })));
  const unknown = unknownFields.map((f) => f.replace(/^\./, ""));
  if (unknown.length > 0) {
    if (mode === "Strict") throw badRequest(`strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(", ")}`);
    if (mode === "Warn") warnings.push(...unknown.map((f) => `unknown field "${f}"`));
  }
  return value as T;
}

function checkTypeMeta(kind: KindDefinition<StoredObject>, object: StoredObject): void {
  if (object.apiVersion !== API_VERSION) throw badRequest(`apiVersion must be "${API_VERSION}", got "${object.apiVersion ?? ""}"`);
  if (object.kind !== kind.kind) throw badRequest(`kind must be "${kind.kind}", got "${object.kind ?? ""}"`);
}

function checkName(kind: KindDefinition<StoredObject>, name: string): void {
  if (!name) throw invalid({ group: GROUP, kind: kind.kind }, name, [{ field: "metadata.name", message: "Required value: name is required" }]);
  if (!isDnsSubdomain(name)) {
    throw invalid({ group: GROUP, kind: kind.kind }, name, [
      { field: "metadata.name", message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` },
    ]);
  }
}

function validated<T extends StoredObject>(kind: KindDefinition<T>, object: T): T {
  checkTypeMeta(kind as KindDefinition<StoredObject>, object);
  checkName(kind as KindDefinition<StoredObject>, object.metadata?.name);
  const problems = kind.validate(object);
  if (problems.length > 0) throw invalid({ group: GROUP, kind: kind.kind }, object.metadata.name, problems);
  return kind.normalize(object);
}

function warningHeaders(warnings: string[]): Headers {
  const headers = new Headers({ "content-type": "application/json" });
  for (const w of warnings) headers.append("Warning", `299 - "${w.replace(/"/g, "'")}"`);
  return headers;
}

function respond(body: unknown, status: number, warnings: string[] = []): Response {
  return new Response(JSON.stringify(body), { status, headers: warningHeaders(warnings) });
}

/** JSON with object keys sorted, so that two equal values always print alike. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v));
}

/** Generation counts spec changes by value, as Kubernetes does: key order is not a change. */
function specChanged(a: StoredObject, b: StoredObject): boolean {
  return canonical(a.spec) !== canonical(b.spec);
}

/** A view of the list a caller may see, honouring label/field selectors, limit and continue. */
function selectVisible<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, viewer: Identity) {
  const q = query(req);
  const labels = parseLabelSelector(q.get("labelSelector"));
  const byName = parseNameFieldSelector(q.get("fieldSelector"));
  return (object: T) => canSee(viewer, resourceOf(endpoint.kind as KindDefinition<StoredObject>), object) && matchesLabels(labels, object.metadata.labels) && byName(object.metadata.name);
}

/** One page of `items` (sorted by name, at `revision`) from `start`, and the token of the next. */
function paginate<T extends StoredObject>(req: Request, items: T[], revision: number, start?: string): { page: T[]; continueToken?: string } {
  const limit = Number(query(req).get("limit") ?? "0");
  let first = 0;
  if (start !== undefined) {
    first = items.findIndex((o) => o.metadata.name >= start);
    if (first < 0) first = items.length;
  }
  if (!Number.isInteger(limit) || limit <= 0 || first + limit >= items.length) return { page: items.slice(first) };
  const page = items.slice(first, first + limit);
  return { page, continueToken: encodeContinue(revision, page[page.length - 1]!.metadata.name) };
}

/** Like kube-apiserver's watch cache, which waits up to 3 s for a resourceVersion it has not reached. */
const FUTURE_REVISION_WAIT_MS = 3_000;

function parseRevision(value: string | null): number | undefined {
  if (value === null || value === "" || value === "0") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`invalid resourceVersion "${value}"`);
  return n;
}

/** `notAfter` (ms): a watch also ends when the credential it was opened with does. */
export async function listOrWatch<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, viewer: Identity, notAfter?: number): Promise<Response> {
  const q = query(req);
  const { kind, store } = endpoint;
  const include = selectVisible(req, endpoint, viewer);
  const watch = q.get("watch");
  if (watch === "1" || watch === "true") {
    const table = wantsTable(req);
    const present = (object: T) => {
      if (!include(object)) return undefined;
      const shown = asSeenBy(kind, object, viewer);
      return table ? toTable(req, kind, [shown], { resourceVersion: shown.metadata.resourceVersion }) : shown;
    };
    const asked = Number(q.get("timeoutSeconds") ?? "0");
    // Like kube-apiserver's --min-request-timeout: a watch without its own timeout ends after a
    // randomised 30–60 minutes, so no stream outlives every re-check for ever.
    const timeoutSeconds = Number.isFinite(asked) && asked > 0 ? asked : Math.round(MIN_REQUEST_TIMEOUT_SECONDS * (1 + Math.random()));
    const lease = viewer.openStream?.(notAfter);
    const signal = lease ? AbortSignal.any([req.signal, lease.signal]) : req.signal;
    const fromRevision = parseRevision(q.get("resourceVersion"));
    // A resourceVersion another replica handed out a moment ago: wait (briefly) until this one has seen it.
    if (fromRevision !== undefined && fromRevision > store.revision) await store.reached(fromRevision, FUTURE_REVISION_WAIT_MS);
    return watchResponse(store, { fromRevision, present, timeoutSeconds, signal, onEnd: lease?.release });
  }
  const token = q.get("continue");
  const at = token ? decodeContinue(token) : undefined;
  // A later page is served as of the first page's revision, from memory or from etcd's history.
  const revision = at?.revision ?? store.revision;
  const items = at ? await store.listAt(at.revision) : store.list();
  const { page, continueToken } = paginate(req, items.filter(include), revision, at?.start);
  const shown = page.map((o) => asSeenBy(kind, o, viewer));
  const listMeta = continueToken ? { resourceVersion: String(revision), continue: continueToken } : { resourceVersion: String(revision) };
  if (wantsTable(req)) return respond(toTable(req, kind, shown, listMeta), 200);
  return respond({ kind: kind.listKind, apiVersion: API_VERSION, metadata: listMeta, items: shown }, 200);
}

export async function create<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, viewer: Identity): Promise<Response> {
  const { kind, store } = endpoint;
  authorizeWrite(viewer, "create", resourceOf(kind as KindDefinition<StoredObject>), "");
  const warnings: string[] = [];
  const body = pruneBody(req, kind, await readObjectBody(req), warnings);
  const metadata = (body.metadata ?? {}) as T["metadata"] & { generateName?: string };
  if (!metadata.name && metadata.generateName) metadata.name = metadata.generateName + Math.random().toString(36).slice(2, 7);
  const { uid: _u, resourceVersion: _rv, generation: _g, creationTimestamp: _c, ...clientMeta } = metadata;
  const object = validated(kind, { ...body, metadata: clientMeta as T["metadata"], status: undefined } as T);
  if (isDryRun(req)) return respond(asSeenBy(kind, object, viewer), 201, warnings);
  const stored = await store.create(object);
  const extra = (await endpoint.createdResponse?.(stored)) ?? {};
  return respond({ ...asSeenBy(kind, stored, viewer), ...extra }, 201, warnings);
}

function visibleObject<T extends StoredObject>(endpoint: KindEndpoint<T>, name: string, viewer: Identity, found: T | undefined = endpoint.store.get(name)): T {
  const object = found;
  if (!object || !canSee(viewer, resourceOf(endpoint.kind as KindDefinition<StoredObject>), object)) {
    throw notFound({ group: GROUP, resource: endpoint.kind.plural }, name);
  }
  return object;
}

export async function read<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, name: string, viewer: Identity): Promise<Response> {
  // Memory first; the store itself for a name created through another replica a moment ago.
  const found = endpoint.store.get(name) ?? (await endpoint.store.fetch(name));
  const object = asSeenBy(endpoint.kind, visibleObject(endpoint, name, viewer, found), viewer);
  if (wantsTable(req)) return respond(toTable(req, endpoint.kind, [object], { resourceVersion: object.metadata.resourceVersion }), 200);
  return respond(object, 200);
}

/** PUT: replaces spec and metadata (or only status for the status subresource). */
export async function replace<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, name: string, viewer: Identity, subresource: "" | "status"): Promise<Response> {
  const { kind, store } = endpoint;
  authorizeWrite(viewer, "update", resourceOf(kind as KindDefinition<StoredObject>), name);
  const warnings: string[] = [];
  const body = pruneBody(req, kind, await readObjectBody(req), warnings);
  if (body.metadata?.name && body.metadata.name !== name) throw badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
  const incoming = { ...body, metadata: { ...body.metadata, name } } as T;
  return write(req, endpoint, name, viewer, subresource, () => incoming, warnings);
}

export async function patch<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, name: string, viewer: Identity, subresource: "" | "status"): Promise<Response> {
  const { kind } = endpoint;
  authorizeWrite(viewer, "patch", resourceOf(kind as KindDefinition<StoredObject>), name);
  const { type, patch: document } = await readPatchBody(req);
  const warnings: string[] = [];
  const change = (current: T): T => {
    const patched = applyPatchDocument(type, current, document);
    if (patched === null || typeof patched !== "object" || Array.isArray(patched)) throw badRequest("the patched object is not an object");
    const pruned = pruneBody(req, kind, patched as Record<string, unknown>, warnings);
    // A patch that does not name a resourceVersion applies to whatever is current.
    const patchedRv = (patched as StoredObject).metadata?.resourceVersion;
    return { ...pruned, metadata: { ...pruned.metadata, name, resourceVersion: patchedRv ?? current.metadata.resourceVersion } } as T;
  };
  return write(req, endpoint, name, viewer, subresource, change, warnings);
}

async function write<T extends StoredObject>(
  req: Request,
  endpoint: KindEndpoint<T>,
  name: string,
  viewer: Identity,
  subresource: "" | "status",
  next: (current: T) => T,
  warnings: string[],
): Promise<Response> {
  const { kind, store } = endpoint;
  const visible = visibleObject(endpoint, name, viewer);
  const dryRun = isDryRun(req);
  const build = (current: T): T => {
    const candidate = next(current);
    if (subresource === "status") {
      return { ...current, status: candidate.status, metadata: { ...current.metadata, resourceVersion: candidate.metadata.resourceVersion } };
    }
    const merged = { ...candidate, status: current.status } as T;
    return validated(kind, merged);
  };
  if (dryRun) return respond(asSeenBy(kind, build(visible), viewer), 200, warnings);
  const stored = await store.update(name, build, { bumpGeneration: (a, b) => subresource === "" && specChanged(a, b) });
  return respond(asSeenBy(kind, stored, viewer), 200, warnings);
}

export async function remove<T extends StoredObject>(req: Request, endpoint: KindEndpoint<T>, name: string, viewer: Identity): Promise<Response> {
  const { kind, store } = endpoint;
  authorizeWrite(viewer, "delete", resourceOf(kind as KindDefinition<StoredObject>), name);
  const current = visibleObject(endpoint, name, viewer);
  let preconditions: { uid?: string; resourceVersion?: string } | undefined;
  const text = req.body ? await req.text() : "";
  if (text.trim()) {
    try {
      preconditions = (JSON.parse(text) as { preconditions?: { uid?: string; resourceVersion?: string } }).preconditions;
    } catch {
      throw badRequest("the DeleteOptions body could not be decoded as JSON");
    }
  }
  if (isDryRun(req)) return respond(asSeenBy(kind, current, viewer), 200);
  const deleted = await store.delete(name, preconditions);
  return respond(asSeenBy(kind, deleted, viewer), 200);
}

