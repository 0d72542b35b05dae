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

/**
 * Ends the request's stream lease with its response (or with the client, without an edge). The
 * returned signal aborts the cluster request with the client, or with the lease until the
 * response head is in (afterwards endsWithLease ends the body cleanly instead).
 */
function holdLease(admitted: Admitted, req: Request, context: Context): { signal: AbortSignal; upstream?: AbortController; headIn?: () => void } {
  const lease = admitted.lease;
  if (!lease) return { signal: req.signal };
  atEnd(req, context, lease.release);
  const upstream = new AbortController();
  const abort = () => upstream.abort();
  req.signal.addEventListener("abort", abort, { once: true });
  lease.signal.addEventListener("abort", abort, { once: true });
  return { signal: upstream.signal, upstream, headIn: () => lease.signal.removeEventListener("abort", abort) };
}

/**
 * A watch or log follow whose lease ends (pass revoked or edited, kpass shutting down) ends as a
 * complete response — the terminating chunk, not a broken connection — so clients re-watch at once.
 */
function endsWithLease(response: Response, lease: NonNullable<Admitted["lease"]>, upstream: AbortController): Response {
  const source = response.body;
  if (!source) return response;
  const reader = source.getReader();
  let ended = false;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      // From now on the lease ends the body first (cleanly), then the cluster request.
      lease.signal.addEventListener("abort", () => {
        ended = true;
        try {
          controller.close();
        } catch {
          // already closed
        }
        upstream.abort();
        void reader.cancel().catch(() => {});
      }, { once: true });
    },
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (ended) return;
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        if (!ended) controller.error(error);
      }
    },
    cancel(reason) {
      upstream.abort();
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
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
    const { signal, upstream, headIn } = holdLease(admitted, req, context);
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
      if (admitted.lease && upstream && headIn) {
        headIn();
        response = endsWithLease(response, admitted.lease, upstream);
      }
    } catch (error) {
      admitted.lease?.release();
      const failure = asApiError(error);
      const timing = { totalMs: performance.now() - admitted.startedAt, upstreamMs, answered };
      admission.finished(admitted, { status: failure.code, bytesIn, bytesOut: 0, message: failure.message, timing });
      throw failure;
    }
    if (!admission.observing) return response;
    return observed(admission, admitted, response, { req, context, bytesIn, timing: { totalMs: performance.now() - admitted.startedAt, upstreamMs, answered } });
  };
}

/** The response as the audit log and metrics see it end: counted when audited, else at its end or now. */
function observed(admission: ClusterAdmission, admitted: Admitted, response: Response, at: { req: Request; context: Context; bytesIn: number; timing: { totalMs: number; upstreamMs: number; answered: boolean } }): Response {
  const { req, context, bytesIn, timing } = at;
  const status = response.status;
  if (!admission.auditing) {
    // Metrics need no byte count, so the body stays on Bun's native path; a stream is
    // finished (its open-stream gauge lowered) when it ends, everything else now.
    if (admitted.stream) atEnd(req, context, () => admission.finished(admitted, { status, bytesIn, bytesOut: 0, timing }));
    else admission.finished(admitted, { status, bytesIn, bytesOut: 0, timing });
    return response;
  }
  return meterResponse(response, req.signal, (bytesOut) => admission.finished(admitted, { status, bytesIn, bytesOut, timing }));
}
