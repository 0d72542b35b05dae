/**
 * `POST passes/{name}/certificate`: a PassCertificateRequest (a CSR) answered with a client
 * certificate for the pass, signed by kpass's client CA. Allowed for an admin pass and for the
 * pass itself (by token or certificate); every issuance — and every refusal after authentication —
 * is written to the audit log.
 */
import type { AuditEvent } from "../audit/audit-log.ts";
import { certificateNotAfter, readCertificateRequest, readExpirationSeconds } from "../auth/certificate-request.ts";
import type { ClientCertificateAuthority } from "../auth/client-certificates.ts";
import type { Identity } from "../auth/identity.ts";
import { authorizeCertificate } from "../auth/kpass-access.ts";
import { API_VERSION, GROUP, PASSES, decodePathSegment, passSubresourceName } from "../core/api-group.ts";
import { passExpired, type Pass } from "../core/pass.ts";
import { asApiError, badRequest, methodNotAllowed, notFound } from "../core/status.ts";
import type { ObjectStore } from "../store/object-store.ts";
import { readObjectBody } from "./body.ts";

export const PASS_CERTIFICATE_REQUEST_KIND = "PassCertificateRequest";

/** Who sent a request to kpass's own API, beyond its identity. */
export interface ApiCaller {
  sourceIP: string;
  /** Serial of the client certificate the caller authenticated with (absent: a token). */
  clientCertificateSerial?: string;
  /** When the credential ends (a client certificate's notAfter, ms): watches it opens end then too. */
  credentialNotAfter?: number;
}

export interface PassCertificateDeps {
  passes: ObjectStore<Pass>;
  clientCa: ClientCertificateAuthority;
  /** --max-cert-ttl: the longest lifetime of an issued certificate. */
  maxTtlMs: number;
  audit: { record(event: AuditEvent): void };
}


/** RFC 3339 with whole seconds, as Kubernetes writes timestamps. */
function timestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function readSpec(body: Record<string, unknown>): Record<string, unknown> {
  if (body.kind !== undefined && body.kind !== PASS_CERTIFICATE_REQUEST_KIND) throw badRequest(`the body must be a ${PASS_CERTIFICATE_REQUEST_KIND}, not ${JSON.stringify(String(body.kind)).slice(0, 128)}`);
  if (body.apiVersion !== undefined && body.apiVersion !== API_VERSION) throw badRequest(`a ${PASS_CERTIFICATE_REQUEST_KIND} has apiVersion ${API_VERSION}, not ${JSON.stringify(String(body.apiVersion)).slice(0, 128)}`);
  const spec = body.spec;
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) throw badRequest("spec: Required value: spec.request must hold the base64 encoding of a PEM CERTIFICATE REQUEST");
  return spec as Record<string, unknown>;
}

export class PassCertificates {
  constructor(private readonly deps: PassCertificateDeps) {}

  /** Serves the certificate route; undefined for any other path. */
  async route(req: Request, identity: Identity, path: string, caller?: ApiCaller): Promise<Response | undefined> {
    const encoded = passSubresourceName(path, "certificate");
    if (encoded === undefined) return undefined;
    let name = encoded;
    const startedAt = performance.now();
    try {
      if (req.method !== "POST") throw methodNotAllowed(req.method, path);
      name = decodePathSegment(encoded);
      authorizeCertificate(identity, name);
      const pass = this.deps.passes.get(name);
      if (!pass) throw notFound(PASSES, name);
      const spec = readSpec(await readObjectBody(req));
      const expirationSeconds = readExpirationSeconds(spec.expirationSeconds);
      const publicKey = await readCertificateRequest(spec.request);
      const now = Date.now();
      if (passExpired(pass, now)) throw badRequest(`pass ${JSON.stringify(name)} expired at ${pass.spec.expiresAt}: no certificate is issued for it`);
      const notAfter = certificateNotAfter(now, expirationSeconds, this.deps.maxTtlMs, pass.spec.expiresAt);
      const issued = await this.deps.clientCa.issue(pass, publicKey, notAfter, now);
      this.audit(identity, name, path, caller, startedAt, 201, { issuedCertificate: { pass: name, serial: issued.serial, notAfter: timestamp(issued.notAfter) } });
      const answer = {
        apiVersion: API_VERSION,
        kind: PASS_CERTIFICATE_REQUEST_KIND,
        metadata: { name, creationTimestamp: timestamp(new Date(now)) },
        spec: { request: spec.request, ...(expirationSeconds === undefined ? {} : { expirationSeconds }) },
        status: { certificate: Buffer.from(issued.certPem).toString("base64"), expirationTimestamp: timestamp(issued.notAfter) },
      };
      return Response.json(answer, { status: 201 });
    } catch (error) {
      const refusal = asApiError(error);
      this.audit(identity, name, path, caller, startedAt, refusal.code, { message: refusal.message });
      throw refusal;
    }
  }

  private audit(identity: Identity, name: string, path: string, caller: ApiCaller | undefined, startedAt: number, status: number, extra: Partial<AuditEvent>): void {
    this.deps.audit.record({
      pass: identity.pass,
      user: identity.user,
      cluster: "",
      attributes: { verb: "create", apiGroup: GROUP, resource: "passes", subresource: "certificate", namespace: "", name },
      target: path,
      status,
      bytesIn: 0,
      bytesOut: 0,
      startedAt,
      sourceIP: caller?.sourceIP,
      clientCertificateSerial: caller?.clientCertificateSerial,
      ...extra,
    });
  }
}
