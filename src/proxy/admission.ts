import { checkRbacWriteBody, RBAC_BODY_LIMIT, rbacBodyTooLarge, rbacWriteNeedsBody } from "../auth/escalation.ts";
import type { Identity } from "../auth/identity.ts";
import type { ProxyPlan } from "./plan.ts";
import type { FramedRequest } from "../core/request-context.ts";
import { ApiError } from "../core/status.ts";

/** Reads at most `limit` bytes of a body; undefined when it is longer. */
export async function readBounded(body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      void reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/**
 * Admission for proxied requests, after authorization: RBAC writes through a cluster that acts
 * as kpass's own identity get kube-apiserver's escalation check against the pass's rules (the
 * cluster would run it against kpass's identity). The body checked is the body forwarded.
 */
export function admitProxied(req: FramedRequest, identity: Identity, plan: ProxyPlan): FramedRequest | Promise<FramedRequest> {
  const attributes = plan.decision.attributes;
  // A host user reaches the cluster impersonated (the default for host users): the cluster runs the
  // escalation check against that user itself. Through a cluster set to `none` a host user has no
  // pass rules to be checked against, so its RBAC writes are refused below (fail closed).
  if (identity.delegated && plan.decision.impersonate) return req;
  if (!rbacWriteNeedsBody(plan.cluster, identity, attributes)) return req;
  return checkedBody(req, identity, plan);
}

async function checkedBody(req: FramedRequest, identity: Identity, plan: ProxyPlan): Promise<FramedRequest> {
  const attributes = plan.decision.attributes;
  const body = req.body ? await readBounded(req.body, RBAC_BODY_LIMIT) : new Uint8Array(0);
  if (!body) throw rbacBodyTooLarge(attributes);
  const refusal = checkRbacWriteBody(identity, attributes, body, req.headers);
  if (refusal instanceof ApiError) throw refusal;
  return withBody(req, body);
}

/** `req` again with the `body` kpass read whole (its Content-Length set to match). */
export function withBody(req: FramedRequest, body: Uint8Array): FramedRequest {
  const headers = new Headers(req.headers);
  headers.set("content-length", String(body.byteLength));
  return { method: req.method, headers, body: body.byteLength > 0 ? new Blob([body]).stream() : null, signal: req.signal };
}
