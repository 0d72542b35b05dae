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

/** Ends the request's stream lease with its response (or with the client, without an edge). */
function holdLease(admitted: Admitted, req: Request, context: Context): AbortSignal {
  const lease = admitted.lease;
  if (!lease) return req.signal;
  if (context.onFinished) context.onFinished(lease.release);
  else req.signal.addEventListener("abort", lease.release, { once: true });
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
    const send = (request: Request) =>
      forwardRequest(request, {
        transport: plan.transport,
        path: plan.target.path,
        search: plan.target.search,
        headers: plan.headers,
        headerTimeoutMs: options.headerTimeoutMs,
        streaming: isStreaming(plan.decision.attributes.verb, plan.target.search),
        impersonate: plan.decision.impersonate,
        signal,
      });
    const review = selfReviewKind(plan.decision.attributes);
    let response: Response;
    try {
      response = review ? await answerSelfReview(review, forwarded, admitted.identity, plan, send) : await send(forwarded);
    } catch (error) {
      admitted.lease?.release();
      const failure = asApiError(error);
      admission.finished(admitted, { status: failure.code, bytesIn, bytesOut: 0, message: failure.message });
      throw failure;
    }
    if (!admission.auditing) return response;
    return meterResponse(response, req.signal, (bytesOut) => admission.finished(admitted, { status: response.status, bytesIn, bytesOut }));
  };
}
