import type { StreamKind, StreamLease } from "./open-streams.ts";
import type { PolicyRule } from "../core/pass.ts";
import type { RequestAttributes } from "./request-attributes.ts";

/** Authorization delegated to the host kube-apiserver (aggregated mode): a host user has no pass rules. */
export interface DelegatedAuthorization {
  extra: Record<string, string[]>;
  uid?: string;
  /** The host's decision (SubjectAccessReview, cached briefly). */
  authorize(attributes: RequestAttributes): Promise<{ allowed: boolean; reason: string }>;
}

/** Who is calling: the pass a request authenticated with, and what that pass may do. */
export interface Identity {
  /** Name of the Pass object. */
  pass: string;
  /** uid of the Pass (the token's `jti`). */
  passUid: string;
  user: string;
  groups: string[];
  /** May manage kpass itself (Clusters, Passes) and read credentials. */
  isAdmin: boolean;
  rules: PolicyRule[];
  /** Decides whether a Cluster object is reachable with this pass. */
  reachesCluster(cluster: { metadata: { name: string; labels?: Record<string, string> } }): boolean;
  /**
   * Holds a watch or tunnel open for as long as the pass allows it (absent: nothing to revoke), and
   * no longer than `notAfter` (ms) when given: the end of the client certificate that opened it.
   */
  openStream?(notAfter?: number, kind?: StreamKind): StreamLease;
  /**
   * Set for a user of the host kube-apiserver (aggregated mode): `pass` is empty, `rules` are
   * empty, and every decision is the host's — authorizeProxy and kpass-access ask it, never rules.
   */
  delegated?: DelegatedAuthorization;
}

/** The identity a cluster is asked to act as (Impersonate-* headers kpass sends). */
export interface ImpersonationHeaders {
  user: string;
  groups: string[];
  /** Impersonate-Uid, forwarded only after an `impersonate uids` check. */
  uid?: string;
  /** Impersonate-Extra-KEY values by decoded KEY, forwarded only after `impersonate userextras/KEY` checks. */
  extra?: Record<string, string[]>;
}
