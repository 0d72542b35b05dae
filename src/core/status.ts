/**
 * Kubernetes `Status` errors: the only shape of error a caller of kpass ever sees, so that kubectl
 * prints `Error from server (Reason): message` instead of a stack trace.
 */

export type StatusReason =
  | "BadRequest"
  | "Unauthorized"
  | "Forbidden"
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "Gone"
  | "Expired"
  | "MethodNotAllowed"
  | "NotAcceptable"
  | "UnsupportedMediaType"
  | "RequestEntityTooLarge"
  | "InternalError"
  | "BadGateway"
  | "ServiceUnavailable"
  | "Timeout"
  | "TooManyRequests";

export interface StatusCause {
  reason?: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export interface StatusObject {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message: string;
  reason?: StatusReason;
  details?: StatusDetails;
  code: number;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
  }

  toStatus(): StatusObject {
    const status: StatusObject = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    if (this.details) status.details = this.details;
    return status;
  }
}

/** A resource qualified by its API group, as apimachinery's schema.GroupResource. */
export interface GroupResource {
  group: string;
  resource: string;
}

/** A kind qualified by its API group, as apimachinery's schema.GroupKind. */
export interface GroupKind {
  group: string;
  kind: string;
}

/** A name in a message, quoted and escaped as Go's %q would (a name cannot forge the sentence around it). */
function quote(name: string): string {
  return JSON.stringify(name);
}

/** `resource.group`, or `resource` alone for the core group. */
export function qualifiedResource(gr: GroupResource): string {
  return gr.group ? `${gr.resource}.${gr.group}` : gr.resource;
}

function qualifiedKind(gk: GroupKind): string {
  return gk.group ? `${gk.kind}.${gk.group}` : gk.kind;
}

/** Status details as apimachinery fills them (empty fields left out, as Go's omitempty does). */
function resourceDetails(gr: GroupResource, name: string): StatusDetails {
  const details: StatusDetails = {};
  if (name) details.name = name;
  if (gr.group) details.group = gr.group;
  if (gr.resource) details.kind = gr.resource;
  return details;
}

export const badRequest = (message: string) => new ApiError(400, "BadRequest", message);
export const unauthorized = (message: string) => new ApiError(401, "Unauthorized", message);
export const methodNotAllowed = (method: string, path: string) =>
  new ApiError(405, "MethodNotAllowed", `the server does not allow method ${method} on ${path}`);

/** 403 with a message of kpass's own words (no resource to name). */
export const forbiddenMessage = (message: string) => new ApiError(403, "Forbidden", message);

/** 403 for a named (or unnamed) object: `<resource> "<name>" is forbidden: <why>`, as kube-apiserver words it. */
export function forbidden(gr: GroupResource, name: string, why: string): ApiError {
  const message = !gr.group && !gr.resource ? `forbidden: ${why}` : name ? `${qualifiedResource(gr)} ${quote(name)} is forbidden: ${why}` : `${qualifiedResource(gr)} is forbidden: ${why}`;
  return new ApiError(403, "Forbidden", message, resourceDetails(gr, name));
}

export function notFound(gr: GroupResource, name: string): ApiError {
  return new ApiError(404, "NotFound", `${qualifiedResource(gr)} ${quote(name)} not found`, resourceDetails(gr, name));
}

export function alreadyExists(gr: GroupResource, name: string): ApiError {
  return new ApiError(409, "AlreadyExists", `${qualifiedResource(gr)} ${quote(name)} already exists`, resourceDetails(gr, name));
}

export function conflict(gr: GroupResource, name: string, why: string): ApiError {
  return new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${qualifiedResource(gr)} ${quote(name)}: ${why}`, resourceDetails(gr, name));
}

export function gone(message: string): ApiError {
  return new ApiError(410, "Gone", message);
}

/** apimachinery's NewResourceExpired: a continue token older than the history that could serve it. */
export function expired(message: string): ApiError {
  return new ApiError(410, "Expired", message);
}

export function pathNotFound(path: string): ApiError {
  return new ApiError(404, "NotFound", `the server could not find the requested resource (${path})`);
}

export function invalid(gk: GroupKind, name: string, causes: StatusCause[]): ApiError {
  const summary = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join(", ");
  return new ApiError(422, "Invalid", `${qualifiedKind(gk)} ${quote(name)} is invalid: ${summary}`, {
    name,
    group: gk.group,
    kind: gk.kind,
    causes: causes.map((c) => ({ reason: c.reason ?? "FieldValueInvalid", message: c.message, field: c.field })),
  });
}

/** Like apimachinery's NewServiceUnavailable: kpass is up, something it needs is not (etcd). */
export const serviceUnavailable = (message: string) => new ApiError(503, "ServiceUnavailable", message);

export function internalError(message: string): ApiError {
  return new ApiError(500, "InternalError", message);
}

/** Anything thrown that is not an ApiError is a bug: the caller gets a terse 500, never the stack. */
export function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return internalError(`internal error: ${detail}`);
}

export function statusResponse(error: ApiError, headers?: Record<string, string>): Response {
  const response = Response.json(error.toStatus(), { status: error.code, headers });
  const retryAfter = error.details?.retryAfterSeconds;
  if (retryAfter !== undefined) response.headers.set("Retry-After", String(retryAfter));
  if (error.code === 401) response.headers.set("WWW-Authenticate", 'Bearer realm="kpass"');
  return response;
}
