/**
 * A cluster-bound REST request (everything but upgrades): admitted, forwarded on the cluster's
 * keep-alive pool, and audited when its response has been sent.
 */
import type { RequestContext } from "../core/request-context.ts";
import { asApiError } from "../core/status.ts";
import { admitProxied } from "./admission.ts";
import type { Admitted, ClusterAdmission } from "./cluster-admission.ts";
import { forwardRequest, isStreaming } from "./forward.ts";
import { meterResponse } from "./response-meter.ts";
import { answerSelfReview } from "./self-review.ts";
import { selfReviewKind } from "../auth/self-review.ts";

export interface RestProxyOptions {
  admission: ClusterAdmission;
  /** Longest wait for a cluster's response head when the request names no `?timeout=`. */
  headerTimeoutMs: number;
}

type Context = Pick<RequestContext, "target" | "sourceIP"> & Partial<Pick<RequestContext, "onFinished" | "rawHeaders" | "clientCertificate">>;

/** Runs `callback` once the response has been written or the client left (without an edge: when the client left). */
function atEnd(req: Request, context: Context, callback: () => void): void {
  if (context.onFinished) context.onFinished(callback);
  else req.signal.addEventListener("abort", callback, { once: true });
}

/** Ends the request's stream lease with its response (or with the client, without an edge). */
function holdLease(admitted: Admitted, req: Request, context: Context): AbortSignal {
  const lease = admitted.lease;
  if (!lease) return req.signal;
  atEnd(req, context, lease.release);
  return AbortSignal.any([req.signal, lease.signal]);
}

export function createRestProxy(options: RestProxyOptions): (req: Request, context: Context) => Promise<Response> {
  const { admission } = options;
  return async function proxy(req, context) {
    let forwarded = req;
    const admitted = await admission.admit(
      { target: context.target, method: req.method, headers: req.headers, rawHeaders: context.rawHeaders, upgrade: false, sourceIP: context.sourceIP, clientCertificate: context.clientCertificate },
      {
        afterPlan: async (plan, identity) => {
          forwarded = await admitProxied(req, identity, plan);
        },
        holdsStream: (plan) => isStreaming(plan.decision.attributes.verb, plan.target.search),
      },
    );
    const { plan } = admitted;
    const bytesIn = Number(forwarded.headers.get("content-length") ?? 0);
    const signal = holdLease(admitted, req, context);
    // The cluster's share of the time to the response head, summed over every exchange (a self
    // review may ask the cluster more than once, or not at all).
    let upstreamMs = 0;
    let answered = false;
    const send = async (request: Request) => {
      const sentAt = performance.now();
      try {
        const response = await forwardRequest(request, {
          transport: plan.transport,
          path: plan.target.path,
          search: plan.target.search,
          headers: plan.headers,
          headerTimeoutMs: options.headerTimeoutMs,
          streaming: isStreaming(plan.decision.attributes.verb, plan.target.search),
          impersonate: plan.decision.impersonate,
          signal,
        });
        answered = true;
        return response;
      } finally {
        upstreamMs += performance.now() - sentAt;
      }
    };
    const review = selfReviewKind(plan.decision.attributes);
    let response: Response;
    try {
      response = review ? await answerSelfReview(review, forwarded, admitted.identity, plan, send) : await send(forwarded);
    } catch (error) {
      admitted.lease?.release();
      const failure = asApiError(error);
      const timing = { totalMs: performance.now() - admitted.startedAt, upstreamMs, answered };
      admission.finished(admitted, { status: failure.code, bytesIn, bytesOut: 0, message: failure.message, timing });
      throw failure;
    }
    if (!admission.observing) return response;
    const timing = { totalMs: performance.now() - admitted.startedAt, upstreamMs, answered };
    const status = response.status;
    if (!admission.auditing) {
      // Metrics need no byte count, so the body stays on Bun's native path; a stream is
      // finished (its open-stream gauge lowered) when it ends, everything else now.
      if (admitted.stream) atEnd(req, context, () => admission.finished(admitted, { status, bytesIn, bytesOut: 0, timing }));
      else admission.finished(admitted, { status, bytesIn, bytesOut: 0, timing });
      return response;
    }
    return meterResponse(response, req.signal, (bytesOut) => admission.finished(admitted, { status, bytesIn, bytesOut, timing }));
  };
}
