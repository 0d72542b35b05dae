import { stringify } from "yaml";
import type { Cluster } from "../api/kinds/cluster.ts";
import { CLUSTERS_PREFIX } from "../proxy/proxy-path.ts";

export interface KubeconfigInput {
  /** https://host:port of kpass as its users reach it. */
  serverUrl: string;
  caPem: string;
  passName: string;
  token: string;
  /** Clusters the pass reaches, in the order their contexts are listed. */
  clusters: Cluster[];
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
    { name: "kpass", server: input.serverUrl },
  ];
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    preferences: {},
    "current-context": entries[0]!.name,
    clusters: entries.map((e) => ({ name: e.name, cluster: { server: e.server, "certificate-authority-data": ca } })),
    users: [{ name: user, user: { token: input.token } }],
    contexts: entries.map((e) => ({ name: e.name, context: { cluster: e.name, user } })),
  });
}
