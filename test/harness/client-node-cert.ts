/**
 * @kubernetes/client-node with a kubeconfig whose user is a kpass client certificate
 * (client-certificate-data / client-key-data, no token): lists pods in one namespace it may read
 * and one it may not, and prints one JSON line with what it got. Run in its own process, with
 * NODE_EXTRA_CA_CERTS holding kpass's CA (see client-node-kpass.ts for why).
 *
 * Under Bun, client-node's own HTTP library passes the certificate, key and CA to fetch only in an
 * undici `dispatcher`, which Bun's fetch ignores: it would present no certificate (kpass: 401). So
 * the API client gets an HttpLibrary that hands the very TLS options client-node read from the
 * kubeconfig (KubeConfig.applyToHTTPSOptions) to Bun's fetch as `tls`. Everything else — the
 * kubeconfig parsing, CoreV1Api, its errors — is client-node's.
 *
 *   KUBECONFIG_FILE=alice.kubeconfig KUBE_CONTEXT=prod ALLOWED_NS=default REFUSED_NS=kube-system bun test/harness/client-node-cert.ts
 */
import * as k8s from "@kubernetes/client-node";

const kc = new k8s.KubeConfig();
kc.loadFromFile(process.env.KUBECONFIG_FILE!);
kc.setCurrentContext(process.env.KUBE_CONTEXT!);
const tlsOptions: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
await kc.applyToHTTPSOptions(tlsOptions as never);
if (!tlsOptions.cert || !tlsOptions.key) throw new Error("the kubeconfig has no client certificate");

const bunFetch: k8s.HttpLibrary = {
  send(request) {
    const answer = fetch(request.getUrl(), {
      method: request.getHttpMethod().toString(),
      body: request.getBody() as string | undefined,
      headers: request.getHeaders(),
      signal: request.getSignal() ?? undefined,
      tls: { ca: tlsOptions.ca?.toString(), cert: tlsOptions.cert!.toString(), key: tlsOptions.key!.toString() },
    }).then((response) => {
      const headers: Record<string, string> = {};
      response.headers.forEach((value, name) => (headers[name] = value));
      return new k8s.ResponseContext(response.status, headers, { text: () => response.text(), binary: async () => Buffer.from(await response.arrayBuffer()), stream: () => response.body });
    });
    return new k8s.Observable(answer);
  },
};
const config = k8s.createConfiguration({ baseServer: new k8s.ServerConfiguration(kc.getCurrentCluster()!.server, {}), authMethods: { default: kc }, httpApi: bunFetch });
const core = new k8s.CoreV1Api(config);

async function attempt(namespace: string): Promise<Record<string, unknown>> {
  try {
    const pods = await core.listNamespacedPod({ namespace });
    return { ok: true, pods: pods.items.map((p) => p.metadata?.name).sort() };
  } catch (error) {
    const e = error as { code?: number; body?: unknown; message?: string };
    let body = e.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        // kept as text
      }
    }
    return { ok: false, code: e.code ?? null, body: body ?? null, message: String(e.message ?? error).slice(0, 500) };
  }
}

const allowed = await attempt(process.env.ALLOWED_NS!);
const refused = await attempt(process.env.REFUSED_NS!);
process.stdout.write(`${JSON.stringify({ allowed, refused })}\n`);
process.exit(0);
