/** Wires kpass's parts together from its data directory and starts listening. Nothing else. */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { clusterKind } from "../api/kinds/cluster.ts";
import { passKind } from "../api/kinds/pass.ts";
import { Kubeconfigs } from "../api/kubeconfigs.ts";
import { PassCertificates } from "../api/pass-certificates.ts";
import type { KindEndpoint } from "../api/rest.ts";
import { createKpassApi } from "../api/router.ts";
import { SelfReviews } from "../api/self-reviews.ts";
import { AuditLog } from "../audit/audit-log.ts";
import { Authenticator, type HostAuthentication } from "../auth/authenticate.ts";
import { DelegatedAuthorizer, FrontProxy, HostApi, HostTokenReviews, readHostKubeconfig } from "../auth/host.ts";
import { ClientCertificateAuthority } from "../auth/client-certificates.ts";
import { OpenStreams } from "../auth/open-streams.ts";
import { loadOrCreateSigningKey } from "../auth/signing-key.ts";
import { TokenService } from "../auth/tokens.ts";
import type { Cluster } from "../core/cluster.ts";
import type { StoredObject } from "../core/object.ts";
import type { Pass } from "../core/pass.ts";
import { raiseDescriptorLimit } from "../edge/descriptors.ts";
import { startEdge } from "../edge/listener.ts";
import { loadServingCertificates } from "../edge/serving-certificates.ts";
import { createUpgradeHandler } from "../edge/upgrade-tunnel.ts";
import { ClusterAdmission } from "../proxy/cluster-admission.ts";
import { ClusterTransports } from "../proxy/cluster-transport.ts";
import { HealthProber } from "../proxy/health-prober.ts";
import { budgetConnections } from "../proxy/http1-client.ts";
import { isProxyTarget } from "../proxy/proxy-path.ts";
import { createRestProxy } from "../proxy/rest-proxy.ts";
import { ensureAdminPass, writeAdminKubeconfig } from "./admin-kubeconfig.ts";
import { createHandler } from "./handler.ts";
import { openStorage, type EtcdStoreConfig } from "./storage.ts";
import { Metrics } from "./metrics.ts";
import { shutdown } from "./shutdown.ts";
import { watchCertificateFiles } from "./certificate-watch.ts";
import { logger } from "../core/log.ts";

export interface ServerConfig {
  dataDir: string;
  /** The encryption key file (default: `<dataDir>/encryption.key`, made on first start). */
  encryptionKeyFile?: string;
  /** Objects and shared secrets in etcd instead of the data directory. */
  etcd?: EtcdStoreConfig;
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
  /** Longest lifetime of an issued pass client certificate (--max-cert-ttl); default 24 h. */
  maxCertTtlMs?: number;
  audit: { file: boolean; stdout: boolean; maxBytes: number; maxBackups?: number };
  /** Per-request metrics (default on; off only to measure what they cost). */
  metrics?: boolean;
  /** A loopback address serving plain-HTTP /metrics without authentication. */
  metricsListen?: { hostname: string; port: number };
  /** Aggregated mode: kpass as an extension API server of the host kube-apiserver this kubeconfig reaches. */
  aggregated?: { hostKubeconfig: string; refreshMs?: number };
}

export interface RunningServer {
  url: string;
  port: number;
  adminKubeconfigPath: string;
  /** The unauthenticated loopback /metrics, when --metrics-listen asked for one. */
  metricsUrl?: string;

  /** Graceful stop: see server/shutdown.ts. `graceMs` defaults to 30 s, `delayMs` to 0. */
  stop(graceMs?: number, delayMs?: number): Promise<void>;
  /** Serving certificate read again (SIGHUP): new handshakes see it, open connections stay. */
  reloadCertificates(): Promise<void>;
  /** The encryption key file read again (SIGHUP): a new first key seals from now on. */
  reloadKeys(): Promise<void>;
  /** Settings that change without a restart (SIGHUP with a config file). */
  applySettings(settings: { maxStreamsPerPass: number }): void;
}

function listenUrl(hostname: string, port: number): string {
  const host = hostname === "0.0.0.0" || hostname === "::" ? "127.0.0.1" : hostname;
  return `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Loopback only: the port has no authentication, so it must not be reachable from another host. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/**
 * Plain-HTTP /metrics without authentication for a Prometheus on the same host. Bun.serve is
 * enough here (the edge's reasons — exact targets, no idle cut, pipelining — are for proxied
 * traffic); anything but GET or HEAD /metrics is a 404 or 405.
 */
function serveMetrics(listen: { hostname: string; port: number }, metrics: Metrics): { hostname: string; port: number; stop(force: boolean): void } {
  const server = Bun.serve({
    hostname: listen.hostname,
    port: listen.port,
    async fetch(req) {
      if (new URL(req.url).pathname !== "/metrics") return new Response("404 page not found\n", { status: 404 });
      if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
      const { text, contentType } = await metrics.render();
      return new Response(text, { headers: { "content-type": contentType } });
    },
  });
  return { hostname: listen.hostname, port: server.port ?? listen.port, stop: (force) => void server.stop(force) };
}

/** Aggregated mode: the host from its kubeconfig, and its front-proxy configuration read once before serving. */
async function connectHost(kubeconfig: string): Promise<HostAuthentication & { api: HostApi }> {
  const api = new HostApi(readHostKubeconfig(kubeconfig));
  const frontProxy = new FrontProxy();
  try {
    await frontProxy.load(api);
  } catch (error) {
    throw new Error(`--aggregated: cannot read kube-system/extension-apiserver-authentication from the host: ${(error as Error).message}`);
  }
  if (!frontProxy.current) throw new Error("--aggregated: the host's kube-system/extension-apiserver-authentication has no requestheader-client-ca-file (is the aggregation layer enabled?)");
  return { api, frontProxy, authorizer: new DelegatedAuthorizer(api), tokenReviews: new HostTokenReviews(api) };
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  if (config.metricsListen && !isLoopback(config.metricsListen.hostname)) {
    throw new Error(`--metrics-listen: "${config.metricsListen.hostname}" is not a loopback address (127.0.0.0/8, ::1 or localhost): that port has no authentication; scrape the TLS port with a pass that may get /metrics instead`);
  }
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const storage = await openStorage(config);
  const { clusters, passes } = storage;
  const certificateOptions = { shared: storage.shared, local: storage.local, sans: config.sans, certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, caFile: config.caFile };
  const certificates = await loadServingCertificates(certificateOptions);
  const tokens = new TokenService(await loadOrCreateSigningKey(storage.shared));
  const transports = new ClusterTransports({ connectTimeoutMs: config.connectTimeoutMs ?? Math.min(config.upstreamTimeoutMs, 10_000) });
  const streams = new OpenStreams(passes, { maxPerPass: config.maxStreamsPerPass ?? 1000 });
  // The client-signing CA is kpass's own, never the serving CA (which may be supplied by flags).
  const clientCa = await ClientCertificateAuthority.loadOrCreate(storage.shared);
  const host = config.aggregated ? await connectHost(config.aggregated.hostKubeconfig) : undefined;
  const authenticator = new Authenticator(tokens, passes, streams, clientCa, host);
  const audit = new AuditLog({ path: config.audit.file ? join(config.dataDir, "audit.log") : undefined, stdout: config.audit.stdout, maxBytes: config.audit.maxBytes, maxBackups: config.audit.maxBackups });
  const metrics = new Metrics({ clusters: () => clusters.list(), passes: () => passes.list(), servingCertificatePem: () => certificates.certPem, auditWriteErrors: () => audit.writeErrors });
  clusters.subscribe((event) => {
    if (event.type !== "DELETED") return;
    metrics.forgetCluster(event.object.metadata.name);
    // Here, not in the prober: on a replica that does not run the prober too.
    transports.forget(event.object.metadata.name);
  });
  let serverUrl = config.externalUrl ?? "";
  let stopping = false;
  const kubeconfigs = new Kubeconfigs({ tokens, authenticator, passes, clusters, caPem: certificates.caPem, serverUrl: () => serverUrl });
  // The token is shown once, in the create response; kpass keeps only the key that signs it.
  const passEndpoint: KindEndpoint<Pass> = { kind: passKind, store: passes, createdResponse: async (pass) => ({ status: { ...pass.status, token: await tokens.mint(pass.metadata.name, pass.metadata.uid) } }) };
  const endpoints = [{ kind: clusterKind, store: clusters }, passEndpoint] as unknown as KindEndpoint<StoredObject>[];
  const admission = new ClusterAdmission({ authenticator, clusters, transports, audit, metrics: config.metrics === false ? undefined : metrics });
  const handler = createHandler({
    authenticator,
    proxy: createRestProxy({ admission, headerTimeoutMs: config.upstreamTimeoutMs }),
    api: createKpassApi({ endpoints, kubeconfigs, passCertificates: new PassCertificates({ passes, clientCa, maxTtlMs: config.maxCertTtlMs ?? 24 * 3_600_000, audit }), selfReviews: new SelfReviews(clusters), metrics: () => metrics.render() }),
    observe: (status) => metrics.observe(status),
    ready: () => !stopping,
    storeHealth: () => storage.health(),
  });
  const descriptors = await raiseDescriptorLimit();
  if (descriptors !== undefined) logger.info(`kpass: descriptor limit ${descriptors}: room for ${budgetConnections(descriptors)} concurrent connections to clusters`);
  const edge = startEdge({
    hostname: config.hostname,
    port: config.port,
    tls: { cert: certificates.certPem, key: certificates.keyPem },
    clientCaPem: clientCa.certPem,
    extraClientCaPems: host?.frontProxy.caPems,
    handle: handler,
    upgrade: createUpgradeHandler({ admission, headerTimeoutMs: config.upstreamTimeoutMs }),
    idleTimeoutSeconds: config.idleTimeoutSeconds,
    onRefused: (context, headers, error) => {
      if (isProxyTarget(context.target)) void admission.refusedAtEdge(context.target, headers, context.sourceIP, error, context.clientCertificate);
    },
  });
  if (host && config.aggregated) {
    // The host may rotate its front-proxy CA or change the allowed names: read it again, and ask
    // new handshakes for certificates of the new CA.
    host.frontProxy.onChange(() => {
      try {
        edge.setExtraClientCas(host.frontProxy.caPems);
      } catch (error) {
        logger.warn(`could not take up the host's new front-proxy CA: ${(error as Error).message}`);
      }
    });
    host.frontProxy.watch(host.api, config.aggregated.refreshMs ?? 30_000, (error) => logger.warn(`reading the host's ${"extension-apiserver-authentication"} ConfigMap: ${error.message}`));
  }
  const metricsServer = config.metricsListen && serveMetrics(config.metricsListen, metrics);
  const url = listenUrl(config.hostname, edge.port);
  serverUrl ||= url;
  const adminKubeconfigPath = join(config.dataDir, "admin.kubeconfig");
  // Rewritten (atomically) on every start so it always names the address kpass listens on now;
  // a current-context the user chose is kept while that context exists, else it is `kpass`.
  await writeAdminKubeconfig(adminKubeconfigPath, await kubeconfigs.forPass(await ensureAdminPass(passes)));
  const prober = storage.elect("prober", new HealthProber(clusters, transports, config.probeIntervalMs, Math.min(config.upstreamTimeoutMs, 10_000)));
  prober.start();
  const reloadCertificates = async () => {
    const next = await loadServingCertificates(certificateOptions);
    edge.reloadTls({ cert: next.certPem, key: next.keyPem });
  };
  const certificateWatch = config.tlsCertFile && config.tlsKeyFile ? watchCertificateFiles([config.tlsCertFile, config.tlsKeyFile], reloadCertificates) : undefined;
  return {
    url,
    port: edge.port,
    adminKubeconfigPath,
    metricsUrl: metricsServer ? `http://${metricsServer.hostname.includes(":") ? `[${metricsServer.hostname}]` : metricsServer.hostname}:${metricsServer.port}/metrics` : undefined,
    async stop(graceMs = 30_000, delayMs = 0) {
      if (stopping) return;
      stopping = true;
      await shutdown({ edge, streams, audit, stopBackground: () => {
        void prober.stop();
        host?.frontProxy.stop();
        certificateWatch?.stop();
        metricsServer?.stop(true);
        storage.stop();
      }, log: (m) => logger.info(`kpass: ${m}`) }, graceMs, delayMs);
    },
    reloadCertificates,
    async reloadKeys() {
      await storage.keys.reload();
    },
    applySettings(settings) {
      streams.setMaxPerPass(settings.maxStreamsPerPass);
    },
  };
}
