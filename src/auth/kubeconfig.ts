import { stringify } from "yaml";
import { badRequest } from "../core/status.ts";
import type { Cluster } from "../core/cluster.ts";
import { CLUSTERS_PREFIX } from "../core/api-group.ts";

/** The context for kpass's own API, and every generated kubeconfig's default current-context. */
export const KPASS_CONTEXT = "kpass";

export interface KubeconfigInput {
  /** https://host:port of kpass as its users reach it. */
  serverUrl: string;
  caPem: string;
  passName: string;
  /** The pass token; absent: the user entry has no credential, for the caller to fill in (`kpass kubeconfig --cert`). */
  token?: string;
  /** Clusters the pass reaches, in the order their contexts are listed. */
  clusters: Cluster[];
  /** Context to make current; default `kpass`. Must name a context of this kubeconfig (else 400). */
  currentContext?: string;
}

/**
 * One kubeconfig for one pass: a context per reachable cluster (named after it, pointing at its
 * proxy path) plus `kpass` for kpass itself; the CA is embedded so nothing skips TLS verification.
 */
export function buildKubeconfig(input: KubeconfigInput): string {
  const ca = Buffer.from(input.caPem).toString("base64");
  const user = `kpass-${input.passName}`;
  const entries = [
    ...input.clusters.map((c) => ({ name: c.metadata.name, server: `${input.serverUrl}${CLUSTERS_PREFIX}${c.metadata.name}/proxy` })),
    { name: KPASS_CONTEXT, server: input.serverUrl },
  ];
  const current = input.currentContext ?? KPASS_CONTEXT;
  if (!entries.some((e) => e.name === current)) {
    throw badRequest(`context "${current}" is not in the kubeconfig of pass "${input.passName}"; its contexts are: ${entries.map((e) => e.name).join(", ")}`);
  }
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    preferences: {},
    "current-context": current,
    clusters: entries.map((e) => ({ name: e.name, cluster: { server: e.server, "certificate-authority-data": ca } })),
    users: [{ name: user, user: input.token === undefined ? {} : { token: input.token } }],
    contexts: entries.map((e) => ({ name: e.name, context: { cluster: e.name, user } })),
  });
}
