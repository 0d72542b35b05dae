import { Http1Pool } from "./http1-client.ts";
import type { Cluster } from "../core/cluster.ts";

/** TLS settings toward one cluster, in the shape both fetch() and Bun.connect() take. */
export interface ClusterTls {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
  serverName?: string;
}

/** Everything needed to send a request to one cluster as its stored identity. */
export interface ClusterTransport {
  cluster: string;
  endpoint: URL;
  tls: ClusterTls;
  bearerToken?: string;
  proxyURL?: string;
  /** kpass's own keep-alive pool toward the cluster (REST, watches and upgrades). */
  pool: Http1Pool;
  /** fetch() with the cluster's TLS settings, through its `proxyURL` when it has one (kpass's pool does not speak CONNECT). */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  close(): void;
}

const decode = (base64: string) => Buffer.from(base64, "base64").toString("utf8");

function clusterTls(cluster: Cluster): ClusterTls {
  const access = cluster.spec.access;
  const tls: ClusterTls = { rejectUnauthorized: !access.insecure };
  if (access.caBundle) tls.ca = decode(access.caBundle);
  if (access.tlsServerName) tls.serverName = access.tlsServerName;
  const x509 = access.credential.type === "X509Certificate" ? access.credential.x509 : undefined;
  if (x509) {
    tls.cert = decode(x509.certificate);
    tls.key = decode(x509.privateKey);
  }
  return tls;
}

function buildTransport(cluster: Cluster, options: TransportOptions): ClusterTransport {
  const access = cluster.spec.access;
  const tls = clusterTls(cluster);
  const endpoint = new URL(access.endpoint);
  const pool = new Http1Pool({ endpoint, tls, connectTimeoutMs: options.connectTimeoutMs });
  // Only clusters behind a proxyURL use Bun's fetch (and its process-wide request cap).
  const session = access.proxyURL ? new Bun.FetchSession({ tls, proxy: access.proxyURL, keepAlive: { idleTimeout: 90 } }) : undefined;
  return {
    cluster: cluster.metadata.name,
    endpoint,
    tls,
    bearerToken: access.credential.type === "ServiceAccountToken" ? access.credential.serviceAccountToken : undefined,
    proxyURL: access.proxyURL,
    pool,
    // Without a proxy, fetch is left to the health prober's occasional probe.
    fetch: (session?.fetch ?? ((input, init) => fetch(input, { ...init, tls } as RequestInit))) as ClusterTransport["fetch"],
    close: () => {
      pool.close();
      session?.close();
    },
  };
}

export interface TransportOptions {
  /** TCP connect + TLS handshake budget toward a cluster. */
  connectTimeoutMs: number;
}

/**
 * One transport (and so one keep-alive pool) per cluster, rebuilt when the cluster's access
 * settings change: a rotated credential never rides on a connection made with the old one.
 */
export class ClusterTransports {
  private readonly transports = new Map<string, { fingerprint: string; transport: ClusterTransport }>();

  constructor(private readonly options: TransportOptions = { connectTimeoutMs: 10_000 }) {}

  for(cluster: Cluster): ClusterTransport {
    // Every spec change bumps the generation, so uid + generation names one set of credentials.
    const fingerprint = `${cluster.metadata.uid}/${cluster.metadata.generation}`;
    const cached = this.transports.get(cluster.metadata.name);
    if (cached && cached.fingerprint === fingerprint) return cached.transport;
    cached?.transport.close();
    const transport = buildTransport(cluster, this.options);
    this.transports.set(cluster.metadata.name, { fingerprint, transport });
    return transport;
  }

  forget(name: string): void {
    this.transports.get(name)?.transport.close();
    this.transports.delete(name);
  }
}

/** The request target on the cluster: the endpoint's own path (if any) joined with the proxied one. */
export function clusterTarget(transport: Pick<ClusterTransport, "endpoint">, path: string, search: string): string {
  return `${transport.endpoint.pathname.replace(/\/$/, "")}${path}${search}`;
}
