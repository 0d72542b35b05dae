/**
 * The one admission step for a cluster-bound request, whichever entry point it came through (the
 * REST proxy or the upgrade tunnel): parse the target, authenticate, plan (authorize, choose the
 * transport, clean the headers), hold a stream lease if the request stays open — and, when any of
 * it refuses, write the refusal to the audit log. Each entry point adds only its own checks.
 */
import type { AuditEvent } from "../audit/audit-log.ts";
import type { Authenticated, Authenticator } from "../auth/authenticate.ts";
import { authorizeDelegatedProxy } from "../auth/authorize.ts";
import type { Identity } from "../auth/identity.ts";
import type { StreamLease } from "../auth/open-streams.ts";
import { requestAttributes, type RequestAttributes } from "../auth/request-attributes.ts";
import type { ClientCertificate } from "../core/request-context.ts";
import { asApiError, badRequest, type ApiError } from "../core/status.ts";
import { planProxy, type ProxyDeps, type ProxyPlan } from "./plan.ts";
import { clusterNameOf, parseProxyTarget, type ProxyTarget } from "./proxy-path.ts";

export interface AuditSink {
  readonly enabled: boolean;
  record(event: AuditEvent): void;
}

/** The kinds of long-lived streams, as kpass_open_streams labels them. */
export type StreamKind = "watch" | "follow" | "exec" | "attach" | "portforward" | "proxy";

/** What a metrics sink learns of a request that left kpass, when it ended. */
export interface FinishedRequest {
  cluster: string;
  attributes: RequestAttributes;
  status: number;
  /** Set for watches, follows and tunnels: they are kept out of the latency histograms. */
  stream?: StreamKind;
  timing?: Timing;
  bytesIn: number;
  bytesOut: number;
}

/** Where a request's time went, up to the moment its response head was ready. */
export interface Timing {
  /** From admission's start until the response head was ready. */
  totalMs: number;
  /** Of that, waiting for the cluster (connect, send, its response head), answered or not. */
  upstreamMs: number;
  /** Whether the cluster sent a response head (not a connect failure or a timeout). */
  answered: boolean;
}

/**
 * The second sink beside the audit log: sees every admitted request once at its end, every open
 * stream while it is open, and every refusal. Metrics must never hold a pass name or a path.
 */
export interface RequestMetricsSink {
  streamOpened(cluster: string, kind: StreamKind): void;
  /** A tunnel's byte counts, readable while it is open (so a long port-forward shows up before it ends). */
  tunnelOpened(cluster: string, bytes: () => { bytesIn: number; bytesOut: number }): () => void;
  finished(request: FinishedRequest): void;
  refused(status: number): void;
}

export interface AdmissionDeps extends ProxyDeps {
  authenticator: Authenticator;
  audit: AuditSink;
  metrics?: RequestMetricsSink;
}

export interface ClusterRequest {
  /** The raw request target. */
  target: string;
  method: string;
  headers: Headers;
  /** Header lines as sent (repeated Impersonate-Group lines stay apart); absent when unknown. */
  rawHeaders?: readonly (readonly [string, string])[];
  upgrade: boolean;
  sourceIP: string;
  /** The client certificate of the connection the request came on, if any. */
  clientCertificate?: ClientCertificate;
}

/** A request kpass let through: who sent it, where it goes, and the lease it holds (if any). */
export interface Admitted {
  request: ClusterRequest;
  identity: Identity;
  plan: ProxyPlan;
  lease?: StreamLease;
  /** Which kind of long-lived stream the request is, if it is one. */
  stream?: StreamKind;
  startedAt: number;
  /** Serial of the client certificate the request authenticated with (absent: a bearer token). */
  certificateSerial?: string;
}

/** What an entry point checks on top of the common steps; each may throw an ApiError. */
export interface EntryChecks {
  /** After authentication, before the target is parsed (e.g. the tunnel's protocol and body rules). */
  beforeParse?(): void;
  /** On the parsed target; `undefined` when the target is not a cluster proxy path. */
  onTarget?(target: ProxyTarget | undefined): void;
  /** After authorization (e.g. escalation checks on the body that will be forwarded). */
  afterPlan?(plan: ProxyPlan, identity: Identity): void | Promise<void>;
  /** Whether the request stays open (watch, follow, tunnel), so that revoking the pass must end it. */
  holdsStream(plan: ProxyPlan): boolean;
}

export interface Outcome {
  status: number;
  bytesIn: number;
  bytesOut: number;
  /** Why it failed, when kpass (not the cluster) answered. */
  message?: string;
  /** For the latency histograms (REST requests that are not streams). */
  timing?: Timing;
}

export class ClusterAdmission {
  constructor(private readonly deps: AdmissionDeps) {}

  get auditing(): boolean {
    return this.deps.audit.enabled;
  }

  /** Whether anyone needs `finished` (the audit log, metrics): otherwise an entry point may skip the bookkeeping. */
  get observing(): boolean {
    return this.deps.audit.enabled || this.deps.metrics !== undefined;
  }

  /**
   * Admits `request` or throws (or rejects with) the ApiError that refuses it, already audited.
   * Without a promise when nothing needs one (a cached token, no host decision, no body to read):
   * each await costs about a microsecond on a loaded event loop.
   */
  admit(request: ClusterRequest, checks: EntryChecks): Admitted | Promise<Admitted> {
    const startedAt = performance.now();
    const cached = this.deps.authenticator.authenticateCached(request.headers, request.clientCertificate);
    if (cached) return this.authorize(request, checks, cached, startedAt);
    return this.deps.authenticator.authenticateRequest(request.headers, request.clientCertificate, request.rawHeaders).then(
      (authenticated) => this.authorize(request, checks, authenticated, startedAt),
      (error: unknown) => this.refuse(request, undefined, undefined, error, undefined),
    );
  }

  /** Everything after authentication; sync unless the host decides or a check reads the body. */
  private authorize(request: ClusterRequest, checks: EntryChecks, authenticated: Authenticated, startedAt: number): Admitted | Promise<Admitted> {
    const identity = authenticated.identity;
    const certificateSerial = authenticated.certificate?.serial;
    let target: ProxyTarget | undefined;
    const refuse = (error: unknown): never => this.refuse(request, identity, target, error, certificateSerial);
    try {
      checks.beforeParse?.();
      target = parseProxyTarget(request.target);
      checks.onTarget?.(target);
      if (!target) throw badRequest(`${request.target.slice(0, 256)} is not a cluster proxy path`);
      const parsed = target;
      // A host user (aggregated mode): the host decides, by SubjectAccessReview on clusters/proxy.
      if (identity.delegated) {
        return authorizeDelegatedProxy(identity, parsed.cluster, { method: request.method, path: parsed.path, search: parsed.search, headers: request.headers, upgrade: request.upgrade })
          .then(() => this.plan(request, checks, authenticated, parsed, startedAt, true))
          .catch(refuse);
      }
      const admitted = this.plan(request, checks, authenticated, parsed, startedAt, false);
      return admitted instanceof Promise ? admitted.catch(refuse) : admitted;
    } catch (error) {
      return refuse(error);
    }
  }

  private plan(request: ClusterRequest, checks: EntryChecks, authenticated: Authenticated, target: ProxyTarget, startedAt: number, hostAllowed: boolean): Admitted | Promise<Admitted> {
    const identity = authenticated.identity;
    const plan = planProxy(this.deps, identity, target, { ...request, hostAllowed });
    const checked = checks.afterPlan?.(plan, identity);
    const lease = () => {
      // A stream opened with a client certificate ends when the certificate does.
      const holds = checks.holdsStream(plan);
      const lease = holds ? identity.openStream?.(authenticated.certificate?.notAfter, request.upgrade ? "tunnel" : "stream") : undefined;
      const stream = holds ? streamKind(request, plan.decision.attributes) : undefined;
      if (stream) this.deps.metrics?.streamOpened(plan.cluster.metadata.name, stream);
      return { request, identity, plan, lease, stream, startedAt, certificateSerial: authenticated.certificate?.serial };
    };
    return checked instanceof Promise ? checked.then(lease) : lease();
  }

  /** Audits a refusal and throws it as an ApiError. */
  private refuse(request: ClusterRequest, identity: Identity | undefined, target: ProxyTarget | undefined, error: unknown, certificateSerial: string | undefined): never {
    const refusal = asApiError(error);
    this.refused(request, identity, target, refusal, identity ? certificateSerial : presentedSerial(request));
    throw refusal;
  }

  /** Lets metrics read an open tunnel's bytes; the returned function ends that (call it when the tunnel closes). */
  tunnelling(admitted: Admitted, bytes: () => { bytesIn: number; bytesOut: number }): () => void {
    return this.deps.metrics?.tunnelOpened(admitted.plan.cluster.metadata.name, bytes) ?? (() => {});
  }

  /** The audit line and the metrics of a request that left kpass, written when it ended. */
  finished(admitted: Admitted, outcome: Outcome): void {
    const { identity, plan } = admitted;
    this.deps.metrics?.finished({
      cluster: plan.cluster.metadata.name,
      attributes: plan.decision.attributes,
      status: outcome.status,
      stream: admitted.stream,
      timing: outcome.timing,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
    });
    if (!this.deps.audit.enabled) return;
    this.deps.audit.record({
      pass: identity.pass,
      user: identity.user,
      cluster: plan.cluster.metadata.name,
      attributes: plan.decision.attributes,
      target: plan.target.path + plan.target.search,
      startedAt: admitted.startedAt,
      impersonated: plan.decision.impersonate?.user,
      sourceIP: admitted.request.sourceIP,
      clientCertificateSerial: admitted.certificateSerial,
      status: outcome.status,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
      message: outcome.message,
    });
  }

  /** A cluster-bound request the edge refused before admission (a dot segment), audited like the others. */
  async refusedAtEdge(target: string, headers: Headers, sourceIP: string, error: ApiError, clientCertificate?: ClientCertificate): Promise<void> {
    const request: ClusterRequest = { target, method: "", headers, upgrade: false, sourceIP, clientCertificate };
    const authenticated = await this.deps.authenticator.authenticateRequest(headers, clientCertificate).catch(() => undefined);
    this.refused(request, authenticated?.identity, undefined, error, authenticated ? authenticated.certificate?.serial : presentedSerial(request));
  }

  /** The refusal's line: what authorization would have read, when the target parsed that far. */
  private refused(request: ClusterRequest, identity: Identity | undefined, target: ProxyTarget | undefined, error: ApiError, certificateSerial: string | undefined): void {
    this.deps.metrics?.refused(error.code);
    this.deps.audit.record({
      pass: identity?.pass ?? "",
      user: identity?.user ?? "",
      cluster: target?.cluster ?? clusterNameOf(request.target),
      attributes: target && identity ? readAttributes(request, target) : undefined,
      target: request.target,
      status: error.code,
      bytesIn: 0,
      bytesOut: 0,
      message: error.message,
      sourceIP: request.sourceIP,
      clientCertificateSerial: certificateSerial,
    });
  }
}

/** The serial of a certificate that was to authenticate a request (no bearer token) but did not. */
function presentedSerial(request: ClusterRequest): string | undefined {
  return request.headers.has("authorization") ? undefined : request.clientCertificate?.serial;
}

/** Tunnels by their subresource; REST streams are watches unless they follow a log. */
function streamKind(request: ClusterRequest, a: RequestAttributes): StreamKind {
  if (request.upgrade) {
    const sub = a.subresource;
    return sub === "exec" || sub === "attach" || sub === "portforward" ? sub : "proxy";
  }
  return a.verb === "watch" ? "watch" : "follow";
}

function readAttributes(request: ClusterRequest, target: ProxyTarget): RequestAttributes | undefined {
  try {
    return requestAttributes(request.method, target.path, new URLSearchParams(target.search), { upgrade: request.upgrade });
  } catch {
    return undefined;
  }
}
