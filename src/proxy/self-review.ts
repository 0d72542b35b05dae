/**
 * Self reviews through a cluster proxy, answered as the pass and the cluster together decide:
 * an access review the pass denies is answered by kpass (the cluster is not asked); one it allows
 * is the cluster's answer; a rules review is the cluster's rules narrowed to the pass's; who-am-I
 * is the cluster's answer, naming the pass in `extra` when the cluster sees the person.
 */
import type { Identity } from "../auth/identity.ts";
import { clusterProxyAttributes } from "../auth/authorize.ts";
import { describeAttributes, type RequestAttributes } from "../auth/request-attributes.ts";
import { narrowRules, passAllows, reviewedAttributes, type AccessReviewSpec, type RulesReviewStatus, type SelfReviewKind } from "../auth/self-review.ts";
import { ApiError, badRequest } from "../core/status.ts";
import { readBounded, withBody } from "./admission.ts";
import { readReviewSpec } from "../auth/review-body.ts";
import type { ProxyPlan } from "./plan.ts";
import type { FramedRequest } from "../core/request-context.ts";

/** The extra key naming the pass a request came through. */
export const PASS_EXTRA = "kpass.dev/pass";

const REVIEW_BODY_LIMIT = 1 << 20;
const REVIEW_ANSWER_LIMIT = 8 << 20;

type Send = (request: FramedRequest) => Promise<Response>;

function isJson(contentType: string | null): boolean {
  return contentType === null || /^application\/json\b/i.test(contentType);
}

function acceptsJson(accept: string | null): boolean {
  return accept === null || /application\/json|\*\/\*/i.test(accept);
}

/** The review's body, read whole (bounded), and the spec kpass decides on. */
async function readReview(request: FramedRequest, kind: "access" | "rules"): Promise<{ bytes: Uint8Array; spec: AccessReviewSpec & { namespace?: string } }> {
  const bytes = request.body ? await readBounded(request.body, REVIEW_BODY_LIMIT) : new Uint8Array(0);
  if (!bytes) throw badRequest("the review is larger than 1 MiB");
  return { bytes, spec: readReviewSpec(kind, request.headers.get("content-type"), bytes) };
}

/** `request` again with the `body` kpass read; the cluster is asked for JSON, which kpass reads. */
function resend(request: FramedRequest, plan: ProxyPlan, body: Uint8Array): FramedRequest {
  plan.headers.set("accept", "application/json");
  return withBody(request, body);
}

/**
 * The cluster's answer read whole (bounded) when it is a JSON success; `value` is absent when it
 * is not, and `response` is then the same answer, unchanged, to relay.
 */
async function readAnswer(response: Response): Promise<{ response: Response; value?: Record<string, unknown> }> {
  if (!response.ok || !response.body || !isJson(response.headers.get("content-type")) || response.headers.has("content-encoding")) return { response };
  const bytes = await readBounded(response.body, REVIEW_ANSWER_LIMIT);
  if (!bytes) throw new ApiError(502, "BadGateway", "the cluster's review answer is larger than 8 MiB");
  const again = new Response(bytes, { status: response.status, headers: response.headers });
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    return value && typeof value === "object" ? { response: again, value: value as Record<string, unknown> } : { response: again };
  } catch {
    return { response: again };
  }
}

/** `authorization.k8s.io/v1` (or whichever version the review was posted to). */
function reviewVersion(plan: ProxyPlan): string {
  const m = /\/apis\/(authorization\.k8s\.io\/[^/]+)\//.exec(plan.target.path);
  return m?.[1] ?? "authorization.k8s.io/v1";
}

function jsonResponse(value: unknown, status: number): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

/**
 * Why kpass would refuse the request an access review asks about, or undefined when it would let
 * it through: the pass's rules, or for a host user the host's decision on `clusters/proxy`.
 */
async function kpassRefusal(identity: Identity, plan: ProxyPlan, asked: RequestAttributes): Promise<string | undefined> {
  const cluster = JSON.stringify(plan.cluster.metadata.name);
  if (identity.delegated) {
    const decision = await identity.delegated.authorize(clusterProxyAttributes(plan.cluster.metadata.name, asked.verb));
    return decision.allowed ? undefined : `the host does not allow ${asked.verb} on clusters/proxy ${cluster}${decision.reason ? `: ${decision.reason}` : ""}`;
  }
  return passAllows(identity, asked) ? undefined : `the pass ${JSON.stringify(identity.pass)} does not allow ${describeAttributes(asked)} on cluster ${cluster}`;
}

async function accessReview(request: FramedRequest, identity: Identity, plan: ProxyPlan, send: Send): Promise<Response> {
  const { bytes, spec } = await readReview(request, "access");
  const asked = reviewedAttributes(spec);
  if (!asked) throw badRequest("spec.resourceAttributes or spec.nonResourceAttributes is required");
  const refusal = await kpassRefusal(identity, plan, asked);
  if (refusal === undefined) return send(resend(request, plan, bytes));
  const reason = refusal;
  return jsonResponse({ kind: "SelfSubjectAccessReview", apiVersion: reviewVersion(plan), metadata: { creationTimestamp: null }, spec, status: { allowed: false, reason } }, 201);
}

async function rulesReview(request: FramedRequest, identity: Identity, plan: ProxyPlan, send: Send): Promise<Response> {
  const { bytes, spec } = await readReview(request, "rules");
  const namespace = String(spec.namespace ?? "");
  const { response, value: answer } = await readAnswer(await send(resend(request, plan, bytes)));
  const status = answer?.status as RulesReviewStatus | undefined;
  if (!answer || !status || !Array.isArray(status.resourceRules) || !Array.isArray(status.nonResourceRules)) return response;
  // A host user's rules are the cluster's and, besides, the host's on clusters/proxy, which a
  // rules review cannot express: the list is marked incomplete, as kube marks a partial one.
  const narrowed = identity.delegated ? { ...status, incomplete: true } : narrowRules(status, identity, namespace);
  return jsonResponse({ ...answer, status: narrowed }, response.status);
}

async function whoami(request: FramedRequest, identity: Identity, plan: ProxyPlan, send: Send): Promise<Response> {
  // Only when the cluster sees the person (kpass impersonates the pass's own user) is the pass theirs to name.
  const seesPerson = !identity.delegated && plan.cluster.spec.impersonation === "user" && plan.decision.impersonate?.user === identity.user;
  // kubectl ≥ 1.33 prefers protobuf and accepts JSON too; kpass asks for the JSON it can add to.
  if (seesPerson && acceptsJson(request.headers.get("accept"))) plan.headers.set("accept", "application/json");
  const sent = await send(request);
  if (!seesPerson) return sent;
  const { response, value: answer } = await readAnswer(sent);
  const userInfo = (answer?.status as { userInfo?: { extra?: Record<string, string[]> } } | undefined)?.userInfo;
  if (!answer || !userInfo) return response;
  userInfo.extra = { ...userInfo.extra, [PASS_EXTRA]: [identity.pass] };
  return jsonResponse(answer, response.status);
}

/** Answers a self review of `kind` sent through a cluster proxy. */
export function answerSelfReview(kind: SelfReviewKind, request: FramedRequest, identity: Identity, plan: ProxyPlan, send: Send): Promise<Response> {
  if (kind === "access") return accessReview(request, identity, plan, send);
  if (kind === "rules") return rulesReview(request, identity, plan, send);
  return whoami(request, identity, plan, send);
}
