import type { OpenStreams } from "./open-streams.ts";
import { unauthorized } from "../core/status.ts";
import { matchesLabels, selectorFromSpec } from "../store/label-selector.ts";
import type { ObjectStore } from "../store/object-store.ts";
import type { Identity } from "./identity.ts";
import { roleRules } from "./roles.ts";
import type { TokenService } from "./tokens.ts";
import type { Pass, PolicyRule } from "../core/pass.ts";

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
 * Bearer token → Identity. The token's signature is checked once (cached); the Pass it names is
 * looked up on every request, so deleting a pass revokes its token and rule edits apply at once.
 */
export class Authenticator {
  private readonly identities = new Map<string, { resourceVersion: string; identity: Identity }>();

  constructor(
    private readonly tokens: TokenService,
    private readonly passes: ObjectStore<Pass>,
    private readonly streams?: OpenStreams,
  ) {}

  async authenticate(headers: Headers): Promise<Identity> {
    const authorization = headers.get("authorization");
    if (!authorization) throw unauthorized("Unauthorized: no bearer token; use the kubeconfig kpass generated for your pass");
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw unauthorized("Unauthorized: the Authorization header must be a bearer token");
    const check = await this.tokens.verify(match[1]!);
    if (!check.ok) {
      throw unauthorized(check.reason === "expired" ? "Unauthorized: the pass token has expired" : "Unauthorized: the token is not a valid kpass pass token");
    }
    const pass = this.passes.get(check.claims.sub);
    if (!pass || pass.metadata.uid !== check.claims.jti) throw unauthorized(`Unauthorized: pass "${check.claims.sub}" has been revoked`);
    if (pass.spec.expiresAt && Date.parse(pass.spec.expiresAt) <= Date.now()) {
      throw unauthorized(`Unauthorized: pass "${pass.metadata.name}" expired at ${pass.spec.expiresAt}`);
    }
    return this.identityFor(pass);
  }

  /** The identity `pass` gives (cached per resourceVersion), e.g. for a kubeconfig naming its clusters. */
  identityFor(pass: Pass): Identity {
    const cached = this.identities.get(pass.metadata.name);
    if (cached && cached.resourceVersion === pass.metadata.resourceVersion) return cached.identity;
    const identity = identityOf(pass);
    const streams = this.streams;
    if (streams) identity.openStream = () => streams.lease(identity);
    this.identities.set(pass.metadata.name, { resourceVersion: pass.metadata.resourceVersion, identity });
    return identity;
  }
}
