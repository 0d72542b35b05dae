import { readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import type { ClusterAccess } from "../core/cluster.ts";

const b64 = (text: string) => Buffer.from(text).toString("base64");

function dataOrFile(data: string | undefined, file: string | undefined): string | undefined {
  if (data) return data.replace(/\s+/g, "");
  if (file) return b64(readFileSync(file, "utf8"));
  return undefined;
}

/** Turns one context of an existing kubeconfig into a Cluster's `spec.access`. */
export function accessFromKubeconfig(path: string, contextName?: string): ClusterAccess {
  const config = new KubeConfig();
  config.loadFromFile(path);
  if (contextName) {
    if (!config.getContextObject(contextName)) throw new Error(`context "${contextName}" not found in ${path}`);
    config.setCurrentContext(contextName);
  }
  const cluster = config.getCurrentCluster();
  const user = config.getCurrentUser();
  if (!cluster || !user) throw new Error(`${path}: the context has no cluster or user`);
  const access: ClusterAccess = { endpoint: cluster.server, credential: { type: "ServiceAccountToken" } };
  const ca = dataOrFile(cluster.caData, cluster.caFile);
  if (ca) access.caBundle = ca;
  if (cluster.skipTLSVerify) access.insecure = true;
  if (cluster.tlsServerName) access.tlsServerName = cluster.tlsServerName;
  if (cluster.proxyUrl) access.proxyURL = cluster.proxyUrl;
  const token = user.token ?? (user.authProvider?.config?.["id-token"] as string | undefined);
  const cert = dataOrFile(user.certData, user.certFile);
  const key = dataOrFile(user.keyData, user.keyFile);
  if (cert && key) access.credential = { type: "X509Certificate", x509: { certificate: cert, privateKey: key } };
  else if (token) access.credential = { type: "ServiceAccountToken", serviceAccountToken: token };
  else if (user.exec) throw new Error(`user "${user.name}" authenticates with an exec plugin; kpass needs a static token or client certificate`);
  else throw new Error(`user "${user.name}" has no token or client certificate`);
  return access;
}
