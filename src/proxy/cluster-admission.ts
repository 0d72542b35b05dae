/**
 * The one admission step for a cluster-bound request, whichever entry point it came through (the
 * REST proxy or the upgrade tunnel): parse the target, authenticate, plan (authorize, choose the
 * transport, clean the headers), hold a stream lease if the request stays open — and, when any of
 * it refuses, write the refusal to the audit log. Each entry point adds only its own checks.
 */
import type { AuditEvent } from "../audit/audit-log.ts";
import type { Authenticator } from "../auth/authenticate.ts";
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

export interface AdmissionDeps extends ProxyDeps {
  authenticator: Authenticator;
  audit: AuditSink;
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
}

export class ClusterAdmission {
  constructor(private readonly deps: AdmissionDeps) {}

  get auditing(): boolean {
    return this.deps.audit.enabled;
  }

  /** Admits `request` or throws the ApiError that refuses it (already audited). */
  async admit(request: ClusterRequest, checks: EntryChecks): Promise<Admitted> {
    const startedAt = performance.now();
    let identity: Identity | undefined;
    let certificateSerial: string | undefined;
    let certificateNotAfter: number | undefined;
    let target: ProxyTarget | undefined;
    try {
      // Who is asking comes first, as in kube-apiserver's filter chain: an anonymous request is
      // told 401 whatever else is wrong with it, and every later refusal names the pass.
      const authenticated = await this.deps.authenticator.authenticateRequest(request.headers, request.clientCertificate);
      identity = authenticated.identity;
      certificateSerial = authenticated.certificate?.serial;
      certificateNotAfter = authenticated.certificate?.notAfter;
      checks.beforeParse?.();
      target = parseProxyTarget(request.target);
      checks.onTarget?.(target);
      if (!target) throw badRequest(`${request.target.slice(0, 256)} is not a cluster proxy path`);
      const plan = planProxy(this.deps, identity, target, request);
      await checks.afterPlan?.(plan, identity);
      // A stream opened with a client certificate ends when the certificate does.
      const lease = checks.holdsStream(plan) ? identity.openStream?.(certificateNotAfter, request.upgrade ? "tunnel" : "stream") : undefined;
      return { request, identity, plan, lease, startedAt, certificateSerial };
    } catch (error) {
      const refusal = asApiError(error);
      this.refused(request, identity, target, refusal, identity ? certificateSerial : presentedSerial(request));
      throw refusal;
    }
  }

  /** The audit line of a request that left kpass, written when it ended. */
  finished(admitted: Admitted, outcome: Outcome): void {
    const { identity, plan } = admitted;
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
      ...outcome,
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

function readAttributes(request: ClusterRequest, target: ProxyTarget): RequestAttributes | undefined {
  try {
    return requestAttributes(request.method, target.path, new URLSearchParams(target.search), { upgrade: request.upgrade });
  } catch {
    return undefined;
  }
}
