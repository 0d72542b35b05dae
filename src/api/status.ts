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

export const badRequest = (message: string) => new ApiError(400, "BadRequest", message);
export const unauthorized = (message: string) => new ApiError(401, "Unauthorized", message);
export const forbidden = (message: string) => new ApiError(403, "Forbidden", message);
export const methodNotAllowed = (method: string, path: string) =>
  new ApiError(405, "MethodNotAllowed", `the server does not allow method ${method} on ${path}`);

export function notFound(kind: string, name: string, group = "cluster.kpass.dev"): ApiError {
  const plural = kind.toLowerCase() + "s";
  return new ApiError(404, "NotFound", `${plural}.${group} "${name}" not found`, { name, group, kind: plural });
}

export function pathNotFound(path: string): ApiError {
  return new ApiError(404, "NotFound", `the server could not find the requested resource (${path})`);
}

export function invalid(kind: string, name: string, causes: StatusCause[], group = "cluster.kpass.dev"): ApiError {
  const summary = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join(", ");
  return new ApiError(422, "Invalid", `${kind}.${group} "${name}" is invalid: ${summary}`, {
    name,
    group,
    kind,
    causes: causes.map((c) => ({ reason: c.reason ?? "FieldValueInvalid", message: c.message, field: c.field })),
  });
}

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
