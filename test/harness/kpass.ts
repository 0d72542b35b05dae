import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { issueClientCertificate, createCertificateAuthority, type CertificateAndKey } from "../../src/edge/pki.ts";
import type { TestCluster } from "../fixture/cluster/server.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BUN = process.execPath;

/** Responses of kpass's API: JSON bodies are read loosely, as tests inspect arbitrary fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface ApiResponse extends Response { json(): Promise<any> }

/** A kpass process started the way a user starts it, on a random loopback port. */
export interface KpassProcess {
  url: string;
  dataDir: string;
  adminKubeconfig: string;
  adminToken: string;
  caPem: string;
  pid: number;
  /** Calls kpass's API with the admin token (or another). */
  api(method: string, path: string, body?: unknown, init?: { token?: string; headers?: Record<string, string> }): Promise<ApiResponse>;
  stop(): Promise<void>;
  /** Sends a signal to the process (SIGTERM, SIGHUP). */
  signal(name: NodeJS.Signals): void;
  /** The exit code, once the process has exited. */
  exited: Promise<number>;
  stderr(): string;
  /** What kpass wrote to stdout so far (the audit log with --audit stdout). */
  stdout(): string;
}

export interface StartOptions {
  dataDir?: string;
  args?: string[];
  /**
   * false: run `serve` with `args` alone, for a config file to set what the harness otherwise
   * passes (`dataDir` then only says where kpass will write its data).
   */
  harnessFlags?: boolean;
  env?: Record<string, string | undefined>;
  /** Another checkout to run kpass from (the bench's A/B of two builds); this one by default. */
  root?: string;
  /** An executable to run instead of `bun src/cli/main.ts` (the compiled dist/kpass). */
  executable?: string;
}

/** Every kpass a test started, so none outlives the test process even when a test fails early. */
const running = new Set<{ kill(): void }>();
process.on("exit", () => {
  for (const proc of running) proc.kill();
});

export async function startKpass(options: StartOptions = {}): Promise<KpassProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "kpass-test-"));
  const harnessFlags = options.harnessFlags === false ? [] : ["--data", dataDir, "--listen", "127.0.0.1:0", "--probe-interval", "2s", "--upstream-timeout", "5s"];
  const root = options.root ?? ROOT;
  const proc = Bun.spawn([...(options.executable ? [options.executable] : [BUN, join(root, "src/cli/main.ts")]), "serve", ...harnessFlags, ...(options.args ?? [])], {
    stdout: "pipe",
    stderr: "pipe",
    cwd: root,
    ...(options.env ? { env: options.env } : {}),
  });
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  let stderrText = "";
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + 15_000;
  let url: string | undefined;
  while (!url) {
    if (Date.now() > deadline) throw new Error(`kpass did not start: ${stderrText}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`kpass exited: ${stderrText}`);
    stderrText += decoder.decode(value);
    // The kubeconfig line is printed last, once everything is written.
    if (/admin kubeconfig: \S+\n/.test(stderrText)) url = /listening on (https:\/\/\S+)/.exec(stderrText)?.[1];
  }
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      stderrText += decoder.decode(value);
    }
  })();
  let stdoutText = "";
  const stdoutDecoder = new TextDecoder();
  void (async () => {
    for await (const chunk of proc.stdout) stdoutText += stdoutDecoder.decode(chunk, { stream: true });
  })();
  const adminKubeconfig = join(dataDir, "admin.kubeconfig");
  const config = parse(readFileSync(adminKubeconfig, "utf8")) as { users: { user: { token: string } }[]; clusters: { cluster: { "certificate-authority-data": string } }[] };
  const adminToken = config.users[0]!.user.token;
  const caPem = Buffer.from(config.clusters[0]!.cluster["certificate-authority-data"], "base64").toString("utf8");
  return {
    url,
    dataDir,
    adminKubeconfig,
    adminToken,
    caPem,
    pid: proc.pid,
    api(method, path, body, init = {}) {
      const headers: Record<string, string> = { "content-type": "application/json", ...init.headers };
      const token = init.token ?? adminToken;
      if (token) headers.authorization = `Bearer ${token}`;
      return fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body), tls: { ca: caPem } }) as Promise<ApiResponse>;
    },
    async stop() {
      proc.kill();
      await proc.exited;
    },
    signal: (name) => proc.kill(name),
    exited: proc.exited,
    stderr: () => stderrText,
    stdout: () => stdoutText,
  };
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

/** A Cluster manifest pointing at a test cluster with a bearer token or a client certificate. */
export function clusterManifest(name: string, cluster: TestCluster, credential: { token: string } | { client: CertificateAndKey }, extra: { labels?: Record<string, string>; impersonation?: "none" | "user" } = {}): Record<string, unknown> {
  const access: Record<string, unknown> = { endpoint: cluster.url, caBundle: b64(cluster.caPem) };
  access.credential = "token" in credential
    ? { type: "ServiceAccountToken", serviceAccountToken: credential.token }
    : { type: "X509Certificate", x509: { certificate: b64(credential.client.certPem), privateKey: b64(credential.client.keyPem) } };
  const spec: Record<string, unknown> = { access };
  if (extra.impersonation) spec.impersonation = extra.impersonation;
  return { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name, labels: extra.labels ?? {} }, spec };
}

/** A client CA and a certificate it signed, for clusters that authenticate kpass by certificate. */
export async function clientCredential(): Promise<{ ca: CertificateAndKey; client: CertificateAndKey }> {
  const ca = await createCertificateAuthority("test-client-ca");
  return { ca, client: await issueClientCertificate(ca, { commonName: "kpass", organizations: ["system:masters"] }) };
}

/** Writes a kubeconfig whose contexts point at kpass cluster proxies (or kpass itself). */
export function writeKubeconfig(kpass: KpassProcess, token: string, contexts: Record<string, string>, file?: string): string {
  const path = file ?? join(kpass.dataDir, `kubeconfig-${crypto.randomUUID().slice(0, 8)}.yaml`);
  const names = Object.keys(contexts);
  writeFileSync(
    path,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      "current-context": names[0],
      clusters: names.map((n) => ({ name: n, cluster: { server: contexts[n], "certificate-authority-data": b64(kpass.caPem) } })),
      users: [{ name: "u", user: { token } }],
      contexts: names.map((n) => ({ name: n, context: { cluster: n, user: "u" } })),
    }),
  );
  return path;
}

export function proxyUrl(kpass: KpassProcess, cluster: string): string {
  return `${kpass.url}/apis/cluster.kpass.dev/v1beta1/clusters/${cluster}/proxy`;
}

/** Polls until `check` returns a value (bounded), for conditions kpass reaches asynchronously. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await Bun.sleep(50);
  }
}

/** Audit lines of a kpass, once `ready` holds for them (the log is written in batches within 200 ms). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function auditLines(kpass: KpassProcess, ready: (lines: any[]) => boolean): Promise<any[]> {
  const path = join(kpass.dataDir, "audit.log");
  return eventually(() => {
    let text = "";
    try {
      text = readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
    const lines = text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    return ready(lines) ? lines : undefined;
  }, 5000);
}

/** Creates Pass `name` with `spec` through kpass's API as the admin; returns its token (shown once). */
export async function createPass(kpass: KpassProcess, name: string, spec: Record<string, unknown>): Promise<string> {
  const response = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/passes", { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec });
  const body = await response.json();
  if (response.status !== 201) throw new Error(`creating pass ${name}: ${response.status} ${JSON.stringify(body)}`);
  return body.status.token as string;
}
