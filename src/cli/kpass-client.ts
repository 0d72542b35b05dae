import { readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";

/** A caller of kpass's own API with the credentials of a kubeconfig's `kpass` context. */
export interface KpassClient {
  request(method: string, path: string, body?: unknown): Promise<Response>;
}

function fileOrData(data: string | undefined, file: string | undefined): string | undefined {
  if (data) return Buffer.from(data, "base64").toString("utf8");
  if (file) return readFileSync(file, "utf8");
  return undefined;
}

export function kpassClient(kubeconfigPath: string): KpassClient {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfigPath);
  if (config.getContexts().some((c) => c.name === "kpass")) config.setCurrentContext("kpass");
  const cluster = config.getCurrentCluster();
  const user = config.getCurrentUser();
  const cert = fileOrData(user?.certData, user?.certFile);
  const key = fileOrData(user?.keyData, user?.keyFile);
  if (!cluster || !user || (!user.token && !(cert && key))) throw new Error(`${kubeconfigPath} has no kpass context with a token or a client certificate`);
  const ca = fileOrData(cluster.caData, cluster.caFile);
  const base = cluster.server.replace(/\/$/, "");
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
  if (user.token) headers.authorization = `Bearer ${user.token}`;
  return {
    request(method, path, body) {
      return fetch(`${base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        tls: { ca, rejectUnauthorized: !cluster.skipTLSVerify, ...(user.token ? {} : { cert, key }) },
      });
    },
  };
}

/** Throws the Status message of a failed response, so the CLI prints what kubectl would. */
export async function expectOk(response: Response): Promise<unknown> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  if (!response.ok) {
    const message = (body as { message?: string })?.message ?? text;
    throw new Error(`Error from server (${response.status}): ${message}`);
  }
  return body;
}
