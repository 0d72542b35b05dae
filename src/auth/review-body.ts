/**
 * Reads the spec of a self review from its request body: JSON, or the Kubernetes protobuf
 * envelope kubectl ≥ 1.33 sends for built-in types ("k8s\0" + runtime.Unknown whose `raw` is the
 * object). Only the spec fields kpass decides on are read; a body it cannot read is refused.
 */
import { ApiError, badRequest } from "../core/status.ts";
import type { AccessReviewSpec } from "./self-review.ts";

const MAGIC = [0x6b, 0x38, 0x73, 0x00];
export const PROTOBUF = "application/vnd.kubernetes.protobuf";

/** Field number → length-delimited values (varints and fixed fields are skipped: no spec field kpass reads uses them). */
function fields(bytes: Uint8Array): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  let at = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 1; at < bytes.length; shift *= 128) {
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * shift;
      if (byte < 0x80) return value;
      if (shift > 2 ** 49) break;
    }
    throw badRequest("the protobuf body is truncated or malformed");
  };
  while (at < bytes.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const length = varint();
      if (at + length > bytes.length) throw badRequest("the protobuf body is truncated or malformed");
      const list = out.get(Math.floor(key / 8)) ?? [];
      list.push(bytes.subarray(at, at + length));
      out.set(Math.floor(key / 8), list);
      at += length;
    } else throw badRequest(`the protobuf body has an unsupported wire type ${wire}`);
  }
  if (at > bytes.length) throw badRequest("the protobuf body is truncated or malformed");
  return out;
}

function text(f: Map<number, Uint8Array[]>, field: number): string | undefined {
  const value = f.get(field)?.at(-1);
  return value === undefined ? undefined : new TextDecoder("utf-8", { fatal: false }).decode(value);
}

function message(f: Map<number, Uint8Array[]>, field: number): Map<number, Uint8Array[]> | undefined {
  const value = f.get(field)?.at(-1);
  return value === undefined ? undefined : fields(value);
}

/** The object inside the envelope (runtime.Unknown field 2, `raw`). */
function unwrap(bytes: Uint8Array): Map<number, Uint8Array[]> {
  if (bytes.length < 4 || MAGIC.some((b, i) => bytes[i] !== b)) throw badRequest("the protobuf body lacks the Kubernetes envelope");
  const raw = fields(bytes.subarray(4)).get(2)?.at(-1);
  return raw ? fields(raw) : new Map();
}

function protobufSpec(bytes: Uint8Array): AccessReviewSpec & { namespace?: string } {
  const spec = message(unwrap(bytes), 2);
  if (!spec) return {};
  const resource = message(spec, 1);
  const nonResource = message(spec, 2);
  const out: AccessReviewSpec & { namespace?: string } = {};
  // SelfSubjectRulesReviewSpec has only `namespace` (field 1, a string); an access review's field 1 is a message.
  if (resource) {
    const names = ["namespace", "verb", "group", "version", "resource", "subresource", "name"] as const;
    out.resourceAttributes = Object.fromEntries(names.map((n, i) => [n, text(resource, i + 1) ?? ""]));
  }
  if (nonResource) out.nonResourceAttributes = { path: text(nonResource, 1) ?? "", verb: text(nonResource, 2) ?? "" };
  return out;
}

function rulesNamespace(bytes: Uint8Array): string {
  const spec = message(unwrap(bytes), 2);
  return spec ? (text(spec, 1) ?? "") : "";
}

export type ReviewKind = "access" | "rules";

/** The spec of an access or rules review, from a body of `contentType`. */
export function readReviewSpec(kind: ReviewKind, contentType: string | null, bytes: Uint8Array): AccessReviewSpec & { namespace?: string } {
  const type = (contentType ?? "application/json").split(";")[0]!.trim().toLowerCase();
  if (type === PROTOBUF) return kind === "rules" ? { namespace: rulesNamespace(bytes) } : protobufSpec(bytes);
  if (type !== "application/json") throw new ApiError(415, "UnsupportedMediaType", `kpass reads self reviews as application/json or ${PROTOBUF}, not ${type.slice(0, 100)}`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw badRequest("the review body is not valid JSON");
  }
  const spec = (value as { spec?: unknown } | null)?.spec;
  return spec && typeof spec === "object" ? (spec as AccessReviewSpec & { namespace?: string }) : {};
}
