import { parse as parseYaml } from "yaml";
import { badRequest, ApiError } from "../core/status.ts";

/** Kubernetes' default request size limit (3 MiB); larger bodies are refused before parsing. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** The body's bytes, refused with 413 past `limit`. */
export async function readBodyBytes(req: Request, limit = MAX_BODY_BYTES): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw tooLarge(limit);
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

async function readLimited(req: Request, limit: number): Promise<string> {
  return new TextDecoder("utf-8", { fatal: false }).decode(await readBodyBytes(req, limit));
}

function tooLarge(limit: number): ApiError {
  return new ApiError(413, "RequestEntityTooLarge", `the request body is larger than ${limit} bytes`);
}

function mediaType(req: Request): string {
  return (req.headers.get("content-type") ?? "application/json").split(";")[0]!.trim().toLowerCase();
}

/** Parses a JSON or YAML request body into a plain object (never throws anything but a Status). */
export async function readObjectBody(req: Request): Promise<Record<string, unknown>> {
  const type = mediaType(req);
  const text = await readLimited(req, MAX_BODY_BYTES);
  if (text.trim() === "") throw badRequest("the request body is empty");
  let value: unknown;
  try {
    if (type === "application/json" || type.endsWith("+json")) value = JSON.parse(text);
    else if (type === "application/yaml" || type === "application/x-yaml" || type.endsWith("+yaml")) value = parseYaml(text, { maxAliasCount: 100 });
    else throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw badRequest(`the body of the request could not be decoded as ${type}: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw badRequest("the body of the request must be a JSON or YAML object");
  }
  return value as Record<string, unknown>;
}

/** Reads a PATCH body: the patch document and which of the patch types it is. */
export async function readPatchBody(req: Request): Promise<{ type: string; patch: unknown }> {
  const type = mediaType(req);
  const text = await readLimited(req, MAX_BODY_BYTES);
  try {
    const patch = type === "application/apply-patch+yaml" ? parseYaml(text) : JSON.parse(text);
    return { type, patch };
  } catch (error) {
    throw badRequest(`the patch could not be decoded: ${(error as Error).message}`);
  }
}
