import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TCPSocketListener } from "bun";
import { writeAdminKubeconfig } from "./admin-kubeconfig.ts";
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
import { OpenStreams } from "./auth/open-streams.ts";
import type { ClientConnection } from "./edge/connection.ts";
import { raiseDescriptorLimit } from "./edge/descriptors.ts";
import { startEdge } from "./edge/listener.ts";
import { loadServingCertificates } from "./edge/serving-certificates.ts";
import { createUpgradeHandler } from "./edge/upgrade-tunnel.ts";
import { ClusterTransports } from "./proxy/cluster-transport.ts";
import { budgetConnections } from "./proxy/http1-client.ts";
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
  /** Longest wait for a cluster's response head when the request names no `?timeout=`. */
  upstreamTimeoutMs: number;
  /** TCP connect + TLS handshake budget toward a cluster. */
  connectTimeoutMs?: number;
  /** Concurrent watches and tunnels one pass may hold (0: unbounded). */
  maxStreamsPerPass?: number;
  /** Seconds an idle client keep-alive connection stays open. */
  idleTimeoutSeconds?: number;
  audit: { file: boolean; stdout: boolean; maxBytes: number; maxBackups?: number };
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
  const connectTimeoutMs = config.connectTimeoutMs ?? Math.min(config.upstreamTimeoutMs, 10_000);
  const transports = new ClusterTransports({ connectTimeoutMs });
  const streams = new OpenStreams(passes, { maxPerPass: config.maxStreamsPerPass ?? 1000 });
  const authenticator = new Authenticator(tokens, passes, streams);
  const audit = new AuditLog({ path: config.audit.file ? join(config.dataDir, "audit.log") : undefined, stdout: config.audit.stdout, maxBytes: config.audit.maxBytes, maxBackups: config.audit.maxBackups });
  const metrics = new Metrics();

  const passEndpoint: KindEndpoint<Pass> = {
    kind: passKind,
    store: passes,
    // The token is shown once, in the create response; kpass keeps only the key that signs it.
    createdResponse: async (pass) => ({ status: { ...pass.status, token: await tokens.mint(pass.metadata.name, pass.metadata.uid) } }),
  };
  const endpoints = [{ kind: clusterKind, store: clusters }, passEndpoint] as unknown as KindEndpoint<StoredObject>[];

  let externalUrl = config.externalUrl ?? "";

  async function kubeconfigFor(pass: Pass, currentContext?: string): Promise<string> {
    const token = await tokens.mint(pass.metadata.name, pass.metadata.uid);
    const identity = await authenticator.authenticate(new Headers({ authorization: `Bearer ${token}` }));
    return buildKubeconfig({ serverUrl: externalUrl, caPem: certificates.caPem, passName: pass.metadata.name, token, clusters: clusters.list().filter((c) => identity.reachesCluster(c)), currentContext });
  }


  async function extraRoutes(req: Request, identity: Identity, path: string): Promise<Response | undefined> {
    const m = /^\/apis\/cluster\.kpass\.dev\/v1beta1\/passes\/([^/]+)\/kubeconfig$/.exec(path);
    if (!m) return undefined;
    if (req.method !== "GET") throw new ApiError(405, "MethodNotAllowed", "only GET is allowed on passes/kubeconfig");
    const name = decodeURIComponent(m[1]!);
    if (!identity.isAdmin && identity.pass !== name) throw forbidden(`pass "${identity.pass}" may only fetch its own kubeconfig`);
    const pass = passes.get(name);
    if (!pass) throw notFound("Pass", name);
    return new Response(await kubeconfigFor(pass, new URL(req.url).searchParams.get("context") ?? undefined), { headers: { "content-type": "application/yaml" } });
  }

  const handler = createApiHandler({
    authenticator,
    clusters,
    transports,
    endpoints,
    upstreamHeaderTimeoutMs: config.upstreamTimeoutMs,
    extraRoutes,
    onProxied: (event) => audit.recordRequest(event),
    onRefused: (target, identity, error, source) => audit.recordRefused(target, identity, error, source),
    metrics: () => metrics.render({ clusters: clusters.size, passes: passes.size }),
    observe: (status) => metrics.observe(status),
  });
  const upgrade = createUpgradeHandler({
    authenticator,
    clusters,
    transports,
    headerTimeoutMs: config.upstreamTimeoutMs,
    onTunnelClosed: (event) => audit.recordTunnel(event),
    onRefused: (target, identity, error, source) => audit.recordRefused(target, identity, error, source),
  });
  const descriptors = await raiseDescriptorLimit();
  if (descriptors !== undefined) console.error(`kpass: descriptor limit ${descriptors}: room for ${budgetConnections(descriptors)} concurrent connections to clusters`);
  const edge: TCPSocketListener<ClientConnection> = startEdge({
    hostname: config.hostname,
    port: config.port,
    tls: { cert: certificates.certPem, key: certificates.keyPem },
    handle: (req, context) => handler(req, context),
    upgrade,
    idleTimeoutSeconds: config.idleTimeoutSeconds,
  });
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
  // Rewritten (atomically) on every start so it always names the address kpass listens on now;
  // a current-context the user chose is kept while that context exists, else it is `kpass`.
  await writeAdminKubeconfig(adminKubeconfigPath, await kubeconfigFor(admin));

  const prober = new HealthProber(clusters, transports, config.probeIntervalMs, Math.min(config.upstreamTimeoutMs, 10_000));
  prober.start();

  return {
    url,
    port: edge.port,
    adminKubeconfigPath,
    async stop() {
      prober.stop();
      streams.stop();
      edge.stop(true);
    },
  };
}
