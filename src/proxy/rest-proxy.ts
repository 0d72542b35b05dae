/**
 * A cluster-bound REST request (everything but upgrades): admitted, forwarded on the cluster's
 * keep-alive pool, and audited when its response has been sent.
 */
import type { FramedRequest, RequestContext } from "../core/request-context.ts";
import { asApiError } from "../core/status.ts";
import { endsWhen, replyToResponse, type ClusterReply } from "./cluster-reply.ts";
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
function atEnd(req: FramedRequest, context: Context, callback: () => void): void {
  if (context.onFinished) context.onFinished(callback);
  else req.signal.addEventListener("abort", callback, { once: true });
}

/**
 * Ends the request's stream lease with its response (or with the client, without an edge). The
 * returned signal aborts the cluster request with the client, or with the lease until the
 * response head is in (afterwards endsWithLease ends the body cleanly instead).
 */
function holdLease(admitted: Admitted, req: FramedRequest, context: Context): { signal: AbortSignal; upstream?: AbortController; headIn?: () => void } {
  const lease = admitted.lease;
  if (!lease) return { signal: req.signal };
  atEnd(req, context, lease.release);
  const upstream = new AbortController();
  const abort = () => upstream.abort();
  req.signal.addEventListener("abort", abort, { once: true });
  lease.signal.addEventListener("abort", abort, { once: true });
  return { signal: upstream.signal, upstream, headIn: () => lease.signal.removeEventListener("abort", abort) };
}

export function createRestProxy(options: RestProxyOptions): (req: FramedRequest, context: Context) => Promise<Response | ClusterReply> {
  const { admission } = options;
  return function proxy(req, context) {
    let forwarded = req;
    let admitted: Admitted | Promise<Admitted>;
    try {
      admitted = admission.admit(
        { target: context.target, method: req.method, headers: req.headers, rawHeaders: context.rawHeaders, upgrade: false, sourceIP: context.sourceIP, clientCertificate: context.clientCertificate },
        {
          afterPlan: (plan, identity) => {
            const checked = admitProxied(req, identity, plan);
            if (!(checked instanceof Promise)) return void (forwarded = checked);
            return checked.then((request) => void (forwarded = request));
          },
          holdsStream: (plan) => isStreaming(plan.decision.attributes.verb, plan.target.search),
        },
      );
    } catch (error) {
      return Promise.reject(error);
    }
    // Promises only where something waits: an await costs about a microsecond on a loaded loop.
    return admitted instanceof Promise ? admitted.then((a) => exchange(a, forwarded, req, context)) : exchange(admitted, forwarded, req, context);
  };

  function exchange(admitted: Admitted, forwarded: FramedRequest, req: FramedRequest, context: Context): Promise<Response | ClusterReply> {
    const { plan } = admitted;
    const bytesIn = Number(forwarded.headers.get("content-length") ?? 0);
    const { signal, upstream, headIn } = holdLease(admitted, req, context);
    // The cluster's share of the time to the response head, summed over every exchange (a self
    // review may ask the cluster more than once, or not at all).
    const timing = { totalMs: 0, upstreamMs: 0, answered: false };
    const forwardOptions = {
      transport: plan.transport,
      path: plan.target.path,
      search: plan.target.search,
      headers: plan.headers,
      headerTimeoutMs: options.headerTimeoutMs,
      // Admission decided it once: a request that holds a stream is a watch or a follow.
      streaming: admitted.stream !== undefined,
      impersonate: plan.decision.impersonate,
      signal,
    };
    const send = (request: FramedRequest): Promise<ClusterReply> => {
      const sentAt = performance.now();
      return forwardRequest(request, forwardOptions).then(
        (reply) => {
          timing.upstreamMs += performance.now() - sentAt;
          timing.answered = true;
          return reply;
        },
        (error: unknown) => {
          timing.upstreamMs += performance.now() - sentAt;
          throw error;
        },
      );
    };
    const review = selfReviewKind(plan.decision.attributes);
    // Self reviews read the cluster's answer: they get it as a Response.
    const answer: Promise<Response | ClusterReply> = review ? answerSelfReview(review, forwarded, admitted.identity, plan, (r) => send(r).then(replyToResponse)) : send(forwarded);
    return answer.then(
      (response) => {
        if (admitted.lease && upstream && headIn) {
          headIn();
          // From now on the lease ends the body first (cleanly), then the cluster request.
          if (!(response instanceof Response) && response.body && !(response.body instanceof Uint8Array)) response.body = endsWhen(response.body, admitted.lease.signal, () => upstream.abort());
        }
        if (!admission.observing) return response;
        timing.totalMs = performance.now() - admitted.startedAt;
        return observed(admission, admitted, response, { req, context, bytesIn, timing });
      },
      (error: unknown) => {
        admitted.lease?.release();
        const failure = asApiError(error);
        timing.totalMs = performance.now() - admitted.startedAt;
        admission.finished(admitted, { status: failure.code, bytesIn, bytesOut: 0, message: failure.message, timing });
        throw failure;
      },
    );
  }
}

/** The response as the audit log and metrics see it end: counted when audited, else at its end or now. */
function observed(admission: ClusterAdmission, admitted: Admitted, response: Response | ClusterReply, at: { req: FramedRequest; context: Context; bytesIn: number; timing: { totalMs: number; upstreamMs: number; answered: boolean } }): Response | ClusterReply {
  const { req, context, bytesIn, timing } = at;
  const status = response.status;
  if (!admission.auditing) {
    // Metrics need no byte count, so the body stays on Bun's native path; a stream is
    // finished (its open-stream gauge lowered) when it ends, everything else now.
    if (admitted.stream) atEnd(req, context, () => admission.finished(admitted, { status, bytesIn, bytesOut: 0, timing }));
    else admission.finished(admitted, { status, bytesIn, bytesOut: 0, timing });
    return response;
  }
  const done = (bytesOut: number) => admission.finished(admitted, { status, bytesIn, bytesOut, timing });
  if (response instanceof Response) return meterResponse(response, req.signal, done);
  // The edge counts what it wrote and says so once, whether the client took all of it or left.
  response.sent = done;
  return response;
}
