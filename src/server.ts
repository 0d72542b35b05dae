import { rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server, TCPSocketListener } from "bun";
import { createApiHandler } from "./api/app.ts";
import { clusterKind, type Cluster } from "./api/kinds/cluster.ts";
import { passKind, type Pass } from "./api/kinds/pass.ts";
import type { KindEndpoint } from "./api/rest.ts";
import { ApiError, forbidden, notFound } from "./api/status.ts";
import { AuditLog } from "./auth/audit.ts";
import { Authenticator } from "./auth/authenticate.ts";
import type { Identity } from "./auth/identity.ts";
import { buildKubeconfig } from "./auth/kubeconfig.ts";
import { loadOrCreateSigningKey } from "./auth/signing-key.ts";
import { TokenService } from "./auth/tokens.ts";
import type { ClientEnd } from "./edge/listener.ts";
import { startEdge } from "./edge/listener.ts";
import { loadServingCertificates } from "./edge/serving-certificates.ts";
import { createUpgradeHandler } from "./edge/upgrade-tunnel.ts";
import { ClusterTransports } from "./proxy/cluster-transport.ts";
import { HealthProber } from "./proxy/health-prober.ts";
import { FilePersistence } from "./store/file-persistence.ts";
import { ObjectStore, RevisionClock } from "./store/object-store.ts";
import type { StoredObject } from "./store/object.ts";
import { Metrics } from "./api/metrics.ts";

export interface ServerConfig {
  dataDir: string;
  hostname: string;
  port: number;
  sans: string[];
  externalUrl?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  caFile?: string;
  probeIntervalMs: number;
  upstreamTimeoutMs: number;
  audit: { file: boolean; stdout: boolean; maxBytes: number };
}

export interface RunningServer {
  url: string;
  port: number;
  adminKubeconfigPath: string;
  stop(): Promise<void>;
}

const ADMIN_PASS = "admin";

/** Builds every part of kpass from its data directory and starts listening. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const certificates = await loadServingCertificates({ dataDir: config.dataDir, sans: config.sans, certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, caFile: config.caFile });
  const tokens = new TokenService(await loadOrCreateSigningKey(join(config.dataDir, "token-signing.jwk")));
  const persistence = new FilePersistence(join(config.dataDir, "objects"));
  const clock = new RevisionClock();
  const clusters = new ObjectStore<Cluster>("clusters", clock, persistence);
  const passes = new ObjectStore<Pass>("passes", clock, persistence);
  await clusters.load();
  await passes.load();
  const transports = new ClusterTransports();
  const authenticator = new Authenticator(tokens, passes);
  const audit = new AuditLog({ path: config.audit.file ? join(config.dataDir, "audit.log") : undefined, stdout: config.audit.stdout, maxBytes: config.audit.maxBytes });
  const metrics = new Metrics();

  const passEndpoint: KindEndpoint<Pass> = {
    kind: passKind,
    store: passes,
    // The token is shown once, in the create response; kpass keeps only the key that signs it.
    createdResponse: async (pass) => ({ status: { ...pass.status, token: await tokens.mint(pass.metadata.name, pass.metadata.uid) } }),
  };
  const endpoints = [{ kind: clusterKind, store: clusters }, passEndpoint] as unknown as KindEndpoint<StoredObject>[];

  const apiSocket = join(tmpdir(), `kpass-${process.pid}-${crypto.randomUUID().slice(0, 8)}.sock`);
  let externalUrl = config.externalUrl ?? "";

  async function kubeconfigFor(pass: Pass): Promise<string> {
    const token = await tokens.mint(pass.metadata.name, pass.metadata.uid);
    const identity = await authenticator.authenticate(new Headers({ authorization: `Bearer ${token}` }));
    return buildKubeconfig({ serverUrl: externalUrl, caPem: certificates.caPem, passName: pass.metadata.name, token, clusters: clusters.list().filter((c) => identity.reachesCluster(c)) });
  }


  async function extraRoutes(req: Request, identity: Identity, path: string): Promise<Response | undefined> {
    const m = /^\/apis\/cluster\.kpass\.dev\/v1beta1\/passes\/([^/]+)\/kubeconfig$/.exec(path);
    if (!m) return undefined;
    if (req.method !== "GET") throw new ApiError(405, "MethodNotAllowed", "only GET is allowed on passes/kubeconfig");
    const name = decodeURIComponent(m[1]!);
    if (!identity.isAdmin && identity.pass !== name) throw forbidden(`pass "${identity.pass}" may only fetch its own kubeconfig`);
    const pass = passes.get(name);
    if (!pass) throw notFound("Pass", name);
    return new Response(await kubeconfigFor(pass), { headers: { "content-type": "application/yaml" } });
  }

  const handler = createApiHandler({
    authenticator,
    clusters,
    transports,
    endpoints,
    upstreamHeaderTimeoutMs: config.upstreamTimeoutMs,
    extraRoutes,
    onProxied: (event) => audit.recordRequest(event),
    onRefused: (target, identity, error) => audit.recordRefused(target, identity, error),
    metrics: () => metrics.render({ clusters: clusters.size, passes: passes.size }),
    observe: (status) => metrics.observe(status),
  });
  const api: Server<undefined> = Bun.serve({
    unix: apiSocket,
    fetch(req, server) {
      // Watches, logs -f and long LISTs have no deadline here; the edge owns the client connection.
      server.timeout(req, 0);
      return handler(req);
    },
  });

  const upgrade = createUpgradeHandler({
    authenticator,
    clusters,
    transports,
    connectTimeoutMs: config.upstreamTimeoutMs,
    onTunnelClosed: (event) => audit.recordTunnel(event),
    onRefused: (target, identity, error) => audit.recordRefused(target, identity, error),
  });
  let edge: TCPSocketListener<ClientEnd>;
  try {
    edge = startEdge({ hostname: config.hostname, port: config.port, tls: { cert: certificates.certPem, key: certificates.keyPem }, apiSocket, upgrade });
  } catch (error) {
    api.stop(true);
    throw error;
  }
  const host = config.hostname === "0.0.0.0" || config.hostname === "::" ? "127.0.0.1" : config.hostname;
  const url = `https://${host.includes(":") ? `[${host}]` : host}:${edge.port}`;
  if (!externalUrl) externalUrl = url;

  const adminKubeconfigPath = join(config.dataDir, "admin.kubeconfig");
  let admin = passes.get(ADMIN_PASS);
  if (!admin) {
    admin = await passes.create({
      apiVersion: "cluster.kpass.dev/v1beta1",
      kind: "Pass",
      metadata: { name: ADMIN_PASS, annotations: { "kpass.dev/description": "created on first start" } },
      spec: { user: "kpass-admin", admin: true, roles: ["cluster-admin"], clusters: { names: ["*"] } },
    } as unknown as Pass);
  }
  // Rewritten on every start so it always names the address kpass listens on now.
  await writeFile(adminKubeconfigPath, await kubeconfigFor(admin), { mode: 0o600 });

  const prober = new HealthProber(clusters, transports, config.probeIntervalMs, Math.min(config.upstreamTimeoutMs, 10_000));
  prober.start();

  return {
    url,
    port: edge.port,
    adminKubeconfigPath,
    async stop() {
      prober.stop();
      edge.stop(true);
      await api.stop(true);
      rmSync(apiSocket, { force: true });
    },
  };
}
