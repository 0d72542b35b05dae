import type { OpenStreams } from "./open-streams.ts";
import { unauthorized } from "../core/status.ts";
import { matchesLabels, selectorFromSpec } from "../store/label-selector.ts";
import type { ObjectStore } from "../store/object-store.ts";
import type { Identity } from "./identity.ts";
import { roleRules } from "./roles.ts";
import type { TokenService } from "./tokens.ts";
import { passExpired, type Pass, type PolicyRule } from "../core/pass.ts";
import type { ClientCertificate } from "../core/request-context.ts";
import type { ClientCertificateAuthority } from "./client-certificates.ts";
import { hostIdentity, type DelegatedAuthorizer, type FrontProxy, type HostTokenReviews, type HostUser } from "./host.ts";

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Aggregated mode: the host's front proxy (aggregator), its authorizer, and its TokenReviews. */
export interface HostAuthentication {
  frontProxy: FrontProxy;
  authorizer: DelegatedAuthorizer;
  tokenReviews?: HostTokenReviews;
}

/** Who a request authenticated as, and with what: a bearer token, or a client certificate (its serial). */
export interface Authenticated {
  identity: Identity;
  /** Set when the request authenticated with a client certificate: its serial and notAfter (ms). */
  certificate?: { serial: string; notAfter: number };
}

function identityOf(pass: Pass): Identity {
  const spec = pass.spec;
  const roleScope = spec.namespaces && spec.namespaces.length > 0 ? { namespaces: spec.namespaces } : {};
  const fromRoles = (spec.roles ?? []).flatMap((role) => roleRules(role) ?? []).map((rule) => ({ ...rule, ...roleScope }));
  const rules: PolicyRule[] = [...fromRoles, ...(spec.rules ?? [])];
  const names = new Set(spec.clusters?.names ?? []);
  const selector = spec.clusters?.selector ? selectorFromSpec(spec.clusters.selector) : undefined;
  return {
    pass: pass.metadata.name,
    passUid: pass.metadata.uid,
    user: spec.user,
    groups: spec.groups ?? [],
    isAdmin: spec.admin === true,
    rules,
    reachesCluster(cluster) {
      if (names.has("*") || names.has(cluster.metadata.name)) return true;
      return selector !== undefined && matchesLabels(selector, cluster.metadata.labels);
    },
  };
}

/**
 * Bearer token or client certificate → Identity. A bearer token wins when a request carries both.
 * The token's signature (and the certificate's chain) is checked once (cached); the Pass it names
 * is looked up on every request, so deleting a pass revokes its tokens and certificates — on open
 * keep-alive connections too — and rule edits apply at once.
 */
export class Authenticator {
  private readonly identities = new Map<string, { resourceVersion: string; identity: Identity }>();

  constructor(
    private readonly tokens: TokenService,
    private readonly passes: ObjectStore<Pass>,
    private readonly streams?: OpenStreams,
    private readonly clientCa?: ClientCertificateAuthority,
    private readonly host?: HostAuthentication,
  ) {}

  async authenticate(headers: Headers, certificate?: ClientCertificate): Promise<Identity> {
    return (await this.authenticateRequest(headers, certificate)).identity;
  }

  /** `rawHeaders`: the header lines as sent, so that a front proxy's repeated X-Remote-Group lines stay apart. */
  async authenticateRequest(headers: Headers, certificate?: ClientCertificate, rawHeaders?: readonly (readonly [string, string])[]): Promise<Authenticated> {
    // The aggregator first, as kube-apiserver's union authenticator puts requestheader first: only
    // its certificate makes X-Remote-* mean anything; anyone else's X-Remote-* are ignored.
    if (certificate && this.host) {
      const check = this.host.frontProxy.check(certificate);
      if (check.from === "refused") throw unauthorized(`Unauthorized: ${check.reason}`);
      if (check.from === "front-proxy") {
        const user = this.host.frontProxy.user(headers, rawHeaders);
        if (!user) throw unauthorized("Unauthorized: the front proxy named no user");
        return { identity: this.hostUser(user, this.host.authorizer) };
      }
    }
    const authorization = headers.get("authorization");
    if (!authorization && certificate && this.clientCa) return this.fromCertificate(certificate, this.clientCa);
    if (!authorization) throw unauthorized("Unauthorized: no bearer token; use the kubeconfig kpass generated for your pass");
    const match = BEARER.exec(authorization);
    if (!match) throw unauthorized("Unauthorized: the Authorization header must be a bearer token");
    const check = await this.tokens.verify(match[1]!);
    if (!check.ok && check.reason !== "expired" && this.host?.tokenReviews) {
      // Not a pass token: perhaps the host's (a service account, an OIDC token).
      const user = await this.host.tokenReviews.review(match[1]!).catch(() => undefined);
      if (user) return { identity: this.hostUser(user, this.host.authorizer) };
      throw unauthorized("Unauthorized: the token is neither a valid kpass pass token nor accepted by the host's TokenReview");
    }
    if (!check.ok) {
      throw unauthorized(check.reason === "expired" ? "Unauthorized: the pass token has expired" : "Unauthorized: the token is not a valid kpass pass token");
    }
    return { identity: this.identityFor(await this.currentPass(check.claims.sub, check.claims.jti)) };
  }

  /**
   * The usual request without a promise: a bearer token verified before, whose pass memory holds
   * with the same uid, unexpired. Undefined sends the caller to authenticateRequest, which decides
   * everything else (and words every refusal). An await costs ~1 µs on a loaded event loop.
   */
  authenticateCached(headers: Headers, certificate?: ClientCertificate): Authenticated | undefined {
    // With a host, a front-proxy certificate comes before any token: the full path decides.
    if (certificate && this.host) return undefined;
    const authorization = headers.get("authorization");
    if (!authorization) return undefined;
    const match = BEARER.exec(authorization);
    const claims = match ? this.tokens.cached(match[1]!) : undefined;
    if (!claims) return undefined;
    const pass = this.passes.get(claims.sub);
    if (!pass || pass.metadata.uid !== claims.jti) return undefined;
    if (passExpired(pass, Date.now())) return undefined;
    return { identity: this.identityFor(pass) };
  }

  /** A host user's Identity; its watches and tunnels hold leases that shutdown ends. */
  private hostUser(user: HostUser, authorizer: DelegatedAuthorizer): Identity {
    const identity = hostIdentity(user, authorizer);
    const streams = this.streams;
    if (streams) identity.openStream = (_notAfter, kind) => streams.leaseHost(identity, kind);
    return identity;
  }

  /** The chain is verified once per connection; the validity window and the Pass on every request. */
  private async fromCertificate(certificate: ClientCertificate, clientCa: ClientCertificateAuthority): Promise<Authenticated> {
    const check = await clientCa.check(certificate);
    if (!check.ok) throw unauthorized(`Unauthorized: ${check.reason}`);
    const now = Date.now();
    if (now >= check.notAfter) throw unauthorized(`Unauthorized: the client certificate (serial ${check.serial}) expired at ${new Date(check.notAfter).toISOString()}`);
    if (now < check.notBefore) throw unauthorized(`Unauthorized: the client certificate (serial ${check.serial}) is not valid before ${new Date(check.notBefore).toISOString()}`);
    return { identity: this.identityFor(await this.currentPass(check.pass, check.passUid, now)), certificate: { serial: check.serial, notAfter: check.notAfter } };
  }

  /**
   * Pass `name` if it still exists with `uid` and has not expired; 401 otherwise. Memory answers;
   * the store itself only when memory lacks that pass (created through another replica just now).
   */
  private async currentPass(name: string, uid: string, now = Date.now()): Promise<Pass> {
    const cached = this.passes.get(name);
    const pass = cached?.metadata.uid === uid ? cached : await this.passes.fetch(name, (p) => p.metadata.uid === uid);
    if (!pass || pass.metadata.uid !== uid) throw unauthorized(`Unauthorized: pass ${JSON.stringify(name)} has been revoked`);
    if (passExpired(pass, now)) {
      throw unauthorized(`Unauthorized: pass "${pass.metadata.name}" expired at ${pass.spec.expiresAt}`);
    }
    return pass;
  }

  /** The identity `pass` gives (cached per resourceVersion), e.g. for a kubeconfig naming its clusters. */
  identityFor(pass: Pass): Identity {
    const cached = this.identities.get(pass.metadata.name);
    if (cached && cached.resourceVersion === pass.metadata.resourceVersion) return cached.identity;
    const identity = identityOf(pass);
    const streams = this.streams;
    if (streams) identity.openStream = (notAfter, kind) => streams.lease(identity, notAfter, kind);
    this.identities.set(pass.metadata.name, { resourceVersion: pass.metadata.resourceVersion, identity });
    return identity;
  }
}
