import fastJsonPatch, { type Operation } from "fast-json-patch";
import { badRequest, ApiError } from "../core/status.ts";

const { applyPatch, validate } = fastJsonPatch;

/** RFC 7386 JSON merge patch: null deletes, objects merge recursively, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const base: Record<string, unknown> =
    target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete base[key];
    else base[key] = mergePatch(base[key], value);
  }
  return base;
}

function jsonPatch(target: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw badRequest("a JSON patch must be an array of operations");
  const error = validate(patch as Operation[], target);
  if (error) throw new ApiError(422, "Invalid", `the JSON patch is invalid: ${error.message.split("\n")[0]}`);
  try {
    return applyPatch(structuredClone(target), patch as Operation[], true, false).newDocument;
  } catch (e) {
    throw new ApiError(422, "Invalid", `the JSON patch could not be applied: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** Applies a PATCH body of the given media type to `current`. */
export function applyPatchDocument(type: string, current: unknown, patch: unknown): unknown {
  switch (type) {
    case "application/merge-patch+json":
      return mergePatch(current, patch);
    case "application/json-patch+json":
      return jsonPatch(current, patch);
    case "application/strategic-merge-patch+json":
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        "strategic merge patch is not supported for kpass objects (as for custom resources); use --type=merge or --type=json",
      );
    case "application/apply-patch+yaml":
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        "server-side apply is not supported by kpass; use client-side `kubectl apply` (without --server-side)",
      );
    default:
      throw new ApiError(415, "UnsupportedMediaType", `unsupported patch type "${type}"`);
  }
}
