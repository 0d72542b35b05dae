/**
 * Aggregated mode: kpass as an extension API server behind a host kube-apiserver's aggregator.
 *
 * - `HostApi`: the host's API as kpass reaches it with `--host-kubeconfig` (ConfigMap reads,
 *   TokenReview, SubjectAccessReview).
 * - `FrontProxy`: the requestheader configuration from `kube-system/extension-apiserver-authentication`
 *   (client CA, allowed names, header names), re-read periodically. A request is from the
 *   aggregator only when its connection presented a certificate signed by that CA with an allowed
 *   CN (an empty list allows any CN); then the user is read from the X-Remote-* headers. Nobody
 *   else's X-Remote-* headers mean anything (and the upstream allowlist never forwards them).
 * - `DelegatedAuthorizer`: SubjectAccessReviews, cached 10 s allowed / 10 s denied like the
 *   apiserver's webhook authorizer.
 *
 * A host user becomes an Identity with `delegated` set: its authorization is the host's.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse } from "yaml";
import type { ClientCertificate } from "../core/request-context.ts";
import { internalError } from "../core/status.ts";
import type { Identity } from "./identity.ts";
import type { RequestAttributes } from "./request-attributes.ts";

export const AUTHENTICATION_CONFIGMAP = { namespace: "kube-system", name: "extension-apiserver-authentication" } as const;
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/** How kpass reaches the host, read from a kubeconfig's current context. */
export interface HostConnection {
  server: string;
  caPem?: string;
  token?: string;
  certPem?: string;
  keyPem?: string;
  insecure?: boolean;
}

function fileOrData(base: string, data: unknown, file: unknown): string | undefined {
  if (typeof data === "string" && data) return Buffer.from(data, "base64").toString("utf8");
  if (typeof file === "string" && file) return readFileSync(resolve(base, file), "utf8");
  return undefined;
}

/** The current context of a kubeconfig file: server, CA and the client credential (token or certificate). */
export function readHostKubeconfig(path: string): HostConnection {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const config = parse(readFileSync(path, "utf8")) as any;
  const base = dirname(resolve(path));
  const contextName = config?.["current-context"] ?? config?.contexts?.[0]?.name;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const context = config?.contexts?.find((c: any) => c.name === contextName)?.context;
  if (!context) throw new Error(`${path}: no current context`);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const cluster = config.clusters?.find((c: any) => c.name === context.cluster)?.cluster;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const user = config.users?.find((u: any) => u.name === context.user)?.user ?? {};
  if (!cluster?.server) throw new Error(`${path}: the current context names no cluster with a server`);
  return {
    server: String(cluster.server).replace(/\/+$/, ""),
    caPem: fileOrData(base, cluster["certificate-authority-data"], cluster["certificate-authority"]),
    insecure: cluster["insecure-skip-tls-verify"] === true,
    token: typeof user.token === "string" ? user.token : user.tokenFile ? readFileSync(resolve(base, user.tokenFile), "utf8").trim() : undefined,
    certPem: fileOrData(base, user["client-certificate-data"], user["client-certificate"]),
    keyPem: fileOrData(base, user["client-key-data"], user["client-key"]),
  };
}

/** The host's API, as far as kpass uses it. */
export class HostApi {
  constructor(private readonly connection: HostConnection) {}

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async request(method: string, path: string, body?: unknown): Promise<any> {
    const c = this.connection;
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (c.token) headers.authorization = `Bearer ${c.token}`;
    const response = await fetch(c.server + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
      tls: { ca: c.caPem, cert: c.certPem, key: c.keyPem, rejectUnauthorized: !c.insecure },
    } as RequestInit);
    const text = await response.text();
    if (!response.ok) throw new Error(`the host answered ${method} ${path} with ${response.status}: ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }
}

/** The requestheader configuration an extension API server reads from the host. */
export interface FrontProxyConfig {
  caPems: string[];
  allowedNames: string[];
  usernameHeaders: string[];
  groupHeaders: string[];
  extraHeaderPrefixes: string[];
  uidHeaders: string[];
}

function jsonList(value: unknown, fallback: string[]): string[] {
  if (typeof value !== "string" || value.trim() === "") return fallback;
  try {
    const list = JSON.parse(value) as unknown;
    return Array.isArray(list) ? list.map(String) : fallback;
  } catch {
    return fallback;
  }
}

/** Every certificate of a PEM bundle. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((pem) => `${pem}\n`) ?? [];
}

/** The ConfigMap's data as kube-apiserver writes it (values of list keys are JSON arrays). */
export function frontProxyConfig(data: Record<string, string>): FrontProxyConfig | undefined {
  const ca = data["requestheader-client-ca-file"];
  if (!ca) return undefined;
  return {
    caPems: splitPem(ca),
    allowedNames: jsonList(data["requestheader-allowed-names"], []),
    usernameHeaders: jsonList(data["requestheader-username-headers"], []).map((h) => h.toLowerCase()),
    groupHeaders: jsonList(data["requestheader-group-headers"], []).map((h) => h.toLowerCase()),
    extraHeaderPrefixes: jsonList(data["requestheader-extra-headers-prefix"], []).map((h) => h.toLowerCase()),
    uidHeaders: jsonList(data["requestheader-uid-headers"], []).map((h) => h.toLowerCase()),
  };
}

/** The user a front proxy names. */
export interface HostUser {
  user: string;
  groups: string[];
  extra: Record<string, string[]>;
  uid?: string;
}

export type FrontProxyCheck = { from: "front-proxy" } | { from: "other" } | { from: "refused"; reason: string };

function commonName(cert: X509Certificate): string {
  for (const line of cert.subject.split("\n")) if (line.startsWith("CN=")) return line.slice(3);
  return "";
}

/** Go's url.PathUnescape of an extra key, lower-cased as the header name is. */
function unescapeKey(key: string): string {
  try {
    return decodeURIComponent(key);
  } catch {
    return key;
  }
}

/** The front proxy's trust and header names, as last read from the host. */
export class FrontProxy {
  private config: FrontProxyConfig | undefined;
  private cas: X509Certificate[] = [];
  private perConnection = new WeakMap<ClientCertificate, FrontProxyCheck>();
  private listeners: ((config: FrontProxyConfig | undefined) => void)[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(config?: FrontProxyConfig) {
    this.set(config);
  }

  get current(): FrontProxyConfig | undefined {
    return this.config;
  }

  /** The CA certificates clients are asked for (the listener names them in its CertificateRequest). */
  get caPems(): string[] {
    return this.config?.caPems ?? [];
  }

  onChange(listener: (config: FrontProxyConfig | undefined) => void): void {
    this.listeners.push(listener);
  }

  set(config: FrontProxyConfig | undefined): void {
    const changed = JSON.stringify(config) !== JSON.stringify(this.config);
    this.config = config;
    this.cas = (config?.caPems ?? []).flatMap((pem) => {
      try {
        return [new X509Certificate(pem)];
      } catch {
        return [];
      }
    });
    if (changed) {
      this.perConnection = new WeakMap();
      for (const listener of this.listeners) listener(config);
    }
  }

  /** Reads the ConfigMap from the host now. */
  async load(host: HostApi): Promise<void> {
    const { namespace, name } = AUTHENTICATION_CONFIGMAP;
    const configMap = (await host.request("GET", `/api/v1/namespaces/${namespace}/configmaps/${name}`)) as { data?: Record<string, string> };
    this.set(frontProxyConfig(configMap.data ?? {}));
  }

  /** Re-reads the ConfigMap every `intervalMs`; a failed read keeps the last configuration. */
  watch(host: HostApi, intervalMs: number, onError: (error: Error) => void): void {
    this.timer = setInterval(() => {
      this.load(host).catch(onError);
    }, intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Whether the connection's certificate is the aggregator's: signed by the requestheader CA, clientAuth, valid now, allowed CN. */
  check(certificate: ClientCertificate): FrontProxyCheck {
    let result = this.perConnection.get(certificate);
    if (!result) {
      result = this.verify(certificate.der);
      this.perConnection.set(certificate, result);
    }
    if (result.from === "front-proxy") {
      // The window is checked on every request (a connection may outlive the certificate).
      const cert = new X509Certificate(certificate.der);
      const now = Date.now();
      if (now < Date.parse(cert.validFrom) || now >= Date.parse(cert.validTo)) return { from: "refused", reason: "the front-proxy client certificate is not valid now" };
    }
    return result;
  }

  private verify(der: Uint8Array): FrontProxyCheck {
    if (this.cas.length === 0) return { from: "other" };
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch {
      return { from: "other" };
    }
    const signed = this.cas.some((ca) => {
      try {
        return cert.checkIssued(ca) && cert.verify(ca.publicKey);
      } catch {
        return false;
      }
    });
    if (!signed) return { from: "other" };
    if (cert.ca) return { from: "refused", reason: "the front-proxy client certificate is a CA certificate" };
    const usages = cert.keyUsage;
    if (usages && usages.length > 0 && !usages.includes(CLIENT_AUTH)) return { from: "refused", reason: "the front-proxy client certificate is not for client authentication" };
    const allowed = this.config?.allowedNames ?? [];
    const cn = commonName(cert);
    if (allowed.length > 0 && !allowed.includes(cn)) {
      return { from: "refused", reason: `the front-proxy client certificate's common name ${JSON.stringify(cn)} is not one of the allowed names ${JSON.stringify(allowed)}` };
    }
    return { from: "front-proxy" };
  }

  /**
   * The user the front proxy names in its headers, read as apiserver's requestheader authenticator
   * reads them: the first non-empty username header; every group header line one group (never
   * split on commas — without the raw lines, a merged value is split on ", " as the best guess);
   * `<prefix><key>` lines extras, the key lower-cased and percent-decoded. Undefined when it names no user.
   */
  user(headers: Headers, rawHeaders?: readonly (readonly [string, string])[]): HostUser | undefined {
    const config = this.config;
    if (!config) return undefined;
    const lines: [string, string][] = rawHeaders
      ? rawHeaders.map(([name, value]) => [name.toLowerCase(), value.trim()])
      : [...headers].flatMap(([name, value]) => value.split(", ").map((v) => [name, v.trim()] as [string, string]));
    const values = (name: string) => lines.filter(([n, v]) => n === name && v !== "").map(([, v]) => v);
    const first = (names: string[]) => {
      for (const name of names) {
        const found = values(name)[0];
        if (found) return found;
      }
      return undefined;
    };
    const user = first(config.usernameHeaders);
    if (!user) return undefined;
    const groups = config.groupHeaders.flatMap(values);
    const extra: Record<string, string[]> = {};
    for (const [name, value] of lines) {
      const prefix = config.extraHeaderPrefixes.find((p) => name.startsWith(p));
      if (!prefix || name.length === prefix.length) continue;
      (extra[unescapeKey(name.slice(prefix.length))] ??= []).push(value);
    }
    const uid = first(config.uidHeaders);
    return { user, groups, extra, ...(uid ? { uid } : {}) };
  }
}

export interface Decision {
  allowed: boolean;
  reason: string;
}

/** The host's decisions, by SubjectAccessReview; cached briefly, as kube-apiserver's webhook authorizer caches. */
export class DelegatedAuthorizer {
  private readonly cache = new Map<string, { decision: Decision; until: number }>();

  constructor(
    private readonly host: HostApi,
    private readonly ttl = { allowedMs: 10_000, deniedMs: 10_000 },
    private readonly limit = 10_000,
  ) {}

  async authorize(user: HostUser, a: RequestAttributes): Promise<Decision> {
    const spec: Record<string, unknown> = { user: user.user, groups: user.groups, extra: user.extra, ...(user.uid ? { uid: user.uid } : {}) };
    if (a.isResourceRequest) {
      spec.resourceAttributes = { namespace: a.namespace, verb: a.verb, group: a.apiGroup, version: a.apiVersion, resource: a.resource, subresource: a.subresource, name: a.name };
    } else {
      spec.nonResourceAttributes = { path: a.path, verb: a.verb };
    }
    const key = JSON.stringify(spec);
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && cached.until > now) return cached.decision;
    const answer = (await this.host.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SubjectAccessReview",
      spec,
    }).catch((error: Error) => {
      // As kube-apiserver answers when its webhook authorizer fails: a 500, never a silent allow.
      throw internalError(`Internal error occurred: the host's SubjectAccessReview failed: ${error.message}`);
    })) as { status?: { allowed?: boolean; denied?: boolean; reason?: string; evaluationError?: string } };
    const status = answer.status ?? {};
    const decision = { allowed: status.allowed === true && status.denied !== true, reason: status.reason ?? status.evaluationError ?? "" };
    if (this.cache.size >= this.limit) this.cache.clear();
    this.cache.set(key, { decision, until: now + (decision.allowed ? this.ttl.allowedMs : this.ttl.deniedMs) });
    return decision;
  }
}

/** The host's TokenReviews, cached briefly (10 s) by token. */
export class HostTokenReviews {
  private readonly cache = new Map<string, { user: HostUser | undefined; until: number }>();

  constructor(private readonly host: HostApi, private readonly ttlMs = 10_000, private readonly limit = 10_000) {}

  async review(token: string): Promise<HostUser | undefined> {
    const now = Date.now();
    const cached = this.cache.get(token);
    if (cached && cached.until > now) return cached.user;
    const answer = (await this.host.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenReview",
      spec: { token },
    })) as { status?: { authenticated?: boolean; user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> } } };
    const status = answer.status ?? {};
    const user = status.authenticated && status.user?.username
      ? { user: status.user.username, groups: status.user.groups ?? [], extra: status.user.extra ?? {}, ...(status.user.uid ? { uid: status.user.uid } : {}) }
      : undefined;
    if (this.cache.size >= this.limit) this.cache.clear();
    this.cache.set(token, { user, until: now + this.ttlMs });
    return user;
  }
}

/** A host user as an Identity: no pass, no pass rules; the host decides everything it may do. */
export function hostIdentity(user: HostUser, authorizer: DelegatedAuthorizer): Identity {
  return {
    pass: "",
    passUid: "",
    user: user.user,
    groups: user.groups,
    isAdmin: false,
    rules: [],
    reachesCluster: () => true,
    delegated: { extra: user.extra, uid: user.uid, authorize: (a) => authorizer.authorize(user, a) },
  };
}
