/**
 * The cluster proxy end to end: a real kpass process in front of test clusters, driven by real
 * kubectl (1.27 and 1.33) and by fetch. Every assertion looks at what the client got AND, where it
 * matters, at what the cluster received (fixture.requests) — kpass is never mocked.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { TCPSocketListener } from "bun";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";
import { RESOURCE_TYPES } from "./fixture/cluster/resources.ts";
import { startTestCluster, type RecordedRequest, type TestCluster } from "./fixture/cluster/server.ts";
import type { KubeObject } from "./fixture/cluster/store.ts";
import { clientCredential, clusterManifest, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { runKubectl, startKubectl, type KubectlResult, type KubectlVersion } from "./harness/kubectl.ts";

const VERSIONS: KubectlVersion[] = ["1.27", "1.33"];
const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const CONFIGMAPS = RESOURCE_TYPES.find((t) => t.resource === "configmaps")!;
const NAMESPACES = RESOURCE_TYPES.find((t) => t.resource === "namespaces")!;

interface StatusBody {
  kind: string;
  code: number;
  reason: string;
  message: string;
  details?: { name?: string; kind?: string };
}

// -------------------------------------------------------------------------------------------------
// helpers

/** A kubectl runner bound to one kubeconfig and an isolated HOME (its discovery cache). */
function kubectlFor(kubeconfig: string, home: string) {
  return (version: KubectlVersion, args: string[], options: { stdin?: string; timeoutMs?: number } = {}): Promise<KubectlResult> =>
    runKubectl(version, ["--kubeconfig", kubeconfig, ...args], { ...options, env: { HOME: home } });
}

function viaKpass(kpass: KpassProcess, cluster: string, pathAndQuery: string, init: { method?: string; body?: string; headers?: Record<string, string>; token?: string; decompress?: boolean; signal?: AbortSignal } = {}): Promise<Response> {
  return fetch(`${proxyUrl(kpass, cluster)}${pathAndQuery}`, {
    method: init.method ?? "GET",
    headers: { authorization: `Bearer ${init.token ?? kpass.adminToken}`, ...init.headers },
    body: init.body,
    tls: { ca: kpass.caPem },
    decompress: init.decompress ?? true,
    signal: init.signal,
  } as RequestInit);
}

function direct(fixture: TestCluster, token: string, pathAndQuery: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  return fetch(`${fixture.url}${pathAndQuery}`, {
    method: init.method ?? "GET",
    headers: { authorization: `Bearer ${token}`, ...init.headers },
    tls: { ca: fixture.caPem },
  });
}

async function registerCluster(kpass: KpassProcess, manifest: Record<string, unknown>): Promise<void> {
  const res = await kpass.api("POST", `${CLUSTERS}`, manifest);
  if (res.status !== 201) throw new Error(`registering cluster failed: ${res.status} ${await res.text()}`);
}

/** A manifest for an endpoint that is not a TestCluster (closed port, silent server, other CA). */
function manifestFor(name: string, endpoint: { url: string; caPem: string }, credential: Parameters<typeof clusterManifest>[2]): Record<string, unknown> {
  return clusterManifest(name, endpoint as unknown as TestCluster, credential);
}

function lastRequest(fixture: TestCluster, match: (r: RecordedRequest) => boolean): RecordedRequest | undefined {
  return fixture.requests.findLast(match);
}

function header(r: RecordedRequest | undefined, name: string): string | undefined {
  const value = r?.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

function configMap(fixture: TestCluster, namespace: string, name: string): (KubeObject & { data?: Record<string, string> }) | undefined {
  return fixture.store.get(CONFIGMAPS, namespace, name) as (KubeObject & { data?: Record<string, string> }) | undefined;
}

function freshHome(): string {
  return mkdtempSync(join(tmpdir(), "kpass-kubectl-home-"));
}

// -------------------------------------------------------------------------------------------------

describe("proxy: kubectl through kpass to a token cluster", () => {
  const FIXTURE_TOKEN = `fixture-token-${crypto.randomUUID()}`;
  let fixture: TestCluster;
  let kpass: KpassProcess;
  let kubectl: ReturnType<typeof kubectlFor>;
  let kubeconfig: string;
  let home: string;

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: FIXTURE_TOKEN } });
    kpass = await startKpass();
    await registerCluster(kpass, clusterManifest("c1", fixture, { token: FIXTURE_TOKEN }));
    kubeconfig = writeKubeconfig(kpass, kpass.adminToken, { c1: proxyUrl(kpass, "c1") });
    home = freshHome();
    kubectl = kubectlFor(kubeconfig, home);
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
    if (home) removeDataDir(home);
  });

  for (const version of VERSIONS) {
    const tag = `k${version.replace(".", "")}`;

    describe(`kubectl ${version}`, () => {
      test("get pods -A, -n, -l (table output comes from the cluster)", async () => {
        const all = await kubectl(version, ["get", "pods", "-A"]);
        expect(all.stderr).toBe("");
        expect(all.exitCode).toBe(0);
        for (const pod of ["web-0", "api-0", "worker-0", "db-0"]) expect(all.stdout).toContain(pod);
        expect(all.stdout).toContain("Running");

        const teamA = await kubectl(version, ["get", "pods", "-n", "team-a", "-o", "name"]);
        expect(teamA.exitCode).toBe(0);
        expect(teamA.stdout.trim().split("\n").sort()).toEqual(["pod/api-0", "pod/worker-0"]);

        const backend = await kubectl(version, ["get", "pods", "-A", "-l", "tier=backend", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}"]);
        expect(backend.exitCode).toBe(0);
        expect(backend.stdout.trim().split("\n").sort()).toEqual(["team-a/api-0", "team-a/worker-0"]);
        const listed = lastRequest(fixture, (r) => r.path === "/api/v1/pods" && r.query.includes("labelSelector"));
        expect(listed?.query).toContain("labelSelector=tier%3Dbackend");
      });

      test("create -f - and apply -f - (configmaps from stdin)", async () => {
        const created = await kubectl(version, ["create", "-f", "-"], {
          stdin: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${tag}-created\n  namespace: default\ndata:\n  source: create-${version}\n`,
        });
        expect(created.stderr).toBe("");
        expect(created.stdout).toContain(`configmap/${tag}-created created`);
        expect(configMap(fixture, "default", `${tag}-created`)?.data).toEqual({ source: `create-${version}` });

        const applyYaml = (value: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${tag}-applied\n  namespace: default\ndata:\n  value: "${value}"\n`;
        const first = await kubectl(version, ["apply", "-f", "-"], { stdin: applyYaml("one") });
        expect(first.exitCode).toBe(0);
        expect(first.stdout).toContain(`configmap/${tag}-applied created`);
        expect(configMap(fixture, "default", `${tag}-applied`)?.data).toEqual({ value: "one" });

        const second = await kubectl(version, ["apply", "-f", "-"], { stdin: applyYaml("two") });
        expect(second.exitCode).toBe(0);
        expect(second.stdout).toContain(`configmap/${tag}-applied configured`);
        expect(configMap(fixture, "default", `${tag}-applied`)?.data).toEqual({ value: "two" });
      });

      test("replace -f - swaps the whole object", async () => {
        const replaced = await kubectl(version, ["replace", "-f", "-"], {
          stdin: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${tag}-created\n  namespace: default\ndata:\n  replaced: "yes"\n`,
        });
        expect(replaced.stderr).toBe("");
        expect(replaced.stdout).toContain(`configmap/${tag}-created replaced`);
        expect(configMap(fixture, "default", `${tag}-created`)?.data).toEqual({ replaced: "yes" });
        expect(lastRequest(fixture, (r) => r.method === "PUT" && r.path === `/api/v1/namespaces/default/configmaps/${tag}-created`)).toBeDefined();
      });

      test("patch --type merge, --type json, default strategic; label", async () => {
        const name = `${tag}-created`;
        const path = `/api/v1/namespaces/default/configmaps/${name}`;
        const merge = await kubectl(version, ["patch", "configmap", name, "--type", "merge", "-p", '{"data":{"merge":"m"}}']);
        expect(merge.exitCode).toBe(0);
        expect(header(lastRequest(fixture, (r) => r.method === "PATCH" && r.path === path), "content-type")).toBe("application/merge-patch+json");

        const json = await kubectl(version, ["patch", "configmap", name, "--type", "json", "-p", '[{"op":"add","path":"/data/json","value":"j"}]']);
        expect(json.exitCode).toBe(0);
        expect(header(lastRequest(fixture, (r) => r.method === "PATCH" && r.path === path), "content-type")).toBe("application/json-patch+json");

        const strategic = await kubectl(version, ["patch", "configmap", name, "-p", '{"data":{"strategic":"s"}}']);
        expect(strategic.exitCode).toBe(0);
        expect(header(lastRequest(fixture, (r) => r.method === "PATCH" && r.path === path), "content-type")).toBe("application/strategic-merge-patch+json");

        expect(configMap(fixture, "default", name)?.data).toEqual({ replaced: "yes", merge: "m", json: "j", strategic: "s" });

        const labelled = await kubectl(version, ["label", "configmap", name, `env=${tag}`]);
        expect(labelled.exitCode).toBe(0);
        expect(labelled.stdout).toContain(`configmap/${name} labeled`);
        expect(configMap(fixture, "default", name)?.metadata.labels).toEqual({ env: tag });

        const byLabel = await kubectl(version, ["get", "configmaps", "-l", `env=${tag}`, "-o", "name"]);
        expect(byLabel.stdout.trim()).toBe(`configmap/${name}`);
      });

      test("delete", async () => {
        const deleted = await kubectl(version, ["delete", "configmap", `${tag}-created`, `${tag}-applied`]);
        expect(deleted.exitCode).toBe(0);
        expect(deleted.stdout).toContain(`configmap "${tag}-created" deleted`);
        expect(configMap(fixture, "default", `${tag}-created`)).toBeUndefined();
        expect(configMap(fixture, "default", `${tag}-applied`)).toBeUndefined();

        const missing = await kubectl(version, ["get", "configmap", `${tag}-created`]);
        expect(missing.exitCode).not.toBe(0);
        expect(missing.stderr).toContain(`Error from server (NotFound): configmaps "${tag}-created" not found`);
      });

      test("get -w sees a new configmap as it is created; killing kubectl cancels the upstream watch", async () => {
        expect(fixture.activeStreams()).toBe(0);
        const watcher = startKubectl(version, ["get", "configmaps", "-w"], { kubeconfig, home });
        try {
          await watcher.waitForLine((l) => l.startsWith("app-config"));
          await eventually(() => (fixture.activeStreams() === 1 ? true : undefined), 10_000);
          const name = `${tag}-watched`;
          const created = await viaKpass(kpass, "c1", "/api/v1/namespaces/default/configmaps", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { seen: "by-watch" } }),
          });
          expect(created.status).toBe(201);
          await watcher.waitForLine((l) => l.startsWith(name), 5_000);
          expect(watcher.exited()).toBe(false);
        } finally {
          await watcher.stop();
        }
        // The client is gone: kpass must cancel its request to the cluster at once.
        await eventually(() => (fixture.activeStreams() === 0 ? true : undefined), 3_000);
      });

      test("logs", async () => {
        const logs = await kubectl(version, ["logs", "web-0"]);
        expect(logs.exitCode).toBe(0);
        const lines = logs.stdout.trim().split("\n");
        expect(lines).toHaveLength(10);
        expect(lines[0]).toBe("web-0/main line 1");
        expect(lines[9]).toBe("web-0/main line 10");

        const tail = await kubectl(version, ["logs", "-n", "team-a", "worker-0", "-c", "sidecar", "--tail=2"]);
        expect(tail.stdout.trim().split("\n")).toEqual(["worker-0/sidecar line 9", "worker-0/sidecar line 10"]);
        const logRequest = lastRequest(fixture, (r) => r.path === "/api/v1/namespaces/team-a/pods/worker-0/log");
        expect(new URLSearchParams(logRequest?.query).get("container")).toBe("sidecar");
        expect(new URLSearchParams(logRequest?.query).get("tailLines")).toBe("2");
      });

      test("logs -f streams lines as the cluster writes them; killing kubectl cancels the upstream stream", async () => {
        expect(fixture.activeStreams()).toBe(0);
        const follower = startKubectl(version, ["logs", "-f", "web-0", "--tail=1"], { kubeconfig, home });
        try {
          await follower.waitForLine((l) => l === "web-0/main line 10");
          const line11 = await follower.waitForLine((l) => l === "web-0/main line 11", 5_000);
          const line13 = await follower.waitForLine((l) => l === "web-0/main line 13", 5_000);
          // The fixture writes one line every 200 ms: a proxy that flushes shows them apart in time.
          expect(line13.at - line11.at).toBeGreaterThan(250);
          expect(fixture.activeStreams()).toBe(1);
        } finally {
          await follower.stop();
        }
        await eventually(() => (fixture.activeStreams() === 0 ? true : undefined), 3_000);
      });

      test("api-resources comes from the cluster's discovery", async () => {
        const resources = await kubectl(version, ["api-resources"]);
        expect(resources.exitCode).toBe(0);
        const rows = resources.stdout.split("\n");
        expect(rows.some((r) => /^pods\s+po\s+v1\s+true\s+Pod$/.test(r.trim()))).toBe(true);
        expect(rows.some((r) => /^configmaps\s+cm\s+v1\s+true\s+ConfigMap$/.test(r.trim()))).toBe(true);
        expect(rows.some((r) => /^deployments\s+deploy\s+apps\/v1\s+true\s+Deployment$/.test(r.trim()))).toBe(true);
        // kpass's own kinds are not the cluster's.
        expect(resources.stdout).not.toContain("cluster.kpass.dev");
      });

      test("version reports the cluster's server version", async () => {
        const result = await kubectl(version, ["version", "-o", "json"]);
        expect(result.exitCode).toBe(0);
        const parsed = JSON.parse(result.stdout) as { clientVersion: { minor: string }; serverVersion: { gitVersion: string } };
        expect(parsed.serverVersion.gitVersion).toBe("v1.30.2");
        expect(parsed.clientVersion.minor).toBe(version.split(".")[1]!);
      });
    });
  }

  describe("fetch", () => {
    test("query strings reach the cluster byte for byte", async () => {
      const query = "labelSelector=app%3Dweb&limit=1";
      const res = await viaKpass(kpass, "c1", `/api/v1/pods?${query}`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { items: KubeObject[]; metadata: { continue?: string } };
      expect(body.items.map((p) => p.metadata.name)).toEqual(["web-0"]);
      expect(lastRequest(fixture, (r) => r.path === "/api/v1/pods" && r.query.startsWith("labelSelector=app"))?.query).toBe(query);

      const odd = "fieldSelector=metadata.name%3Dapi-0&x=a%2Fb%20c+d&x=%E2%9C%93&empty=";
      const res2 = await viaKpass(kpass, "c1", `/api/v1/namespaces/team-a/pods?${odd}`);
      expect(res2.status).toBe(200);
      expect(((await res2.json()) as { items: KubeObject[] }).items.map((p) => p.metadata.name)).toEqual(["api-0"]);
      expect(lastRequest(fixture, (r) => r.path === "/api/v1/namespaces/team-a/pods" && r.query.startsWith("fieldSelector"))?.query).toBe(odd);
    });

    test("POST, GET, PUT, PATCH, DELETE: bodies forwarded, statuses and bodies passed back", async () => {
      const base = "/api/v1/namespaces/default/configmaps";
      const payload = "ünïcødé ✓ " + "x".repeat(200_000);
      const post = await viaKpass(kpass, "c1", base, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "methods" }, data: { payload } }),
      });
      expect(post.status).toBe(201);
      expect(((await post.json()) as { data: Record<string, string> }).data.payload).toBe(payload);
      expect(configMap(fixture, "default", "methods")?.data?.payload).toBe(payload);

      // GET: the very bytes and content type the cluster sends.
      const proxied = await viaKpass(kpass, "c1", `${base}/methods`);
      const straight = await direct(fixture, FIXTURE_TOKEN, `${base}/methods`);
      expect(proxied.status).toBe(200);
      expect(proxied.headers.get("content-type")).toBe(straight.headers.get("content-type"));
      expect(await proxied.text()).toBe(await straight.text());

      const put = await viaKpass(kpass, "c1", `${base}/methods`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "methods", namespace: "default" }, data: { put: "yes" } }),
      });
      expect(put.status).toBe(200);
      expect(configMap(fixture, "default", "methods")?.data).toEqual({ put: "yes" });

      const patch = await viaKpass(kpass, "c1", `${base}/methods`, {
        method: "PATCH",
        headers: { "content-type": "application/merge-patch+json" },
        body: JSON.stringify({ data: { patched: "yes" } }),
      });
      expect(patch.status).toBe(200);
      expect(configMap(fixture, "default", "methods")?.data).toEqual({ put: "yes", patched: "yes" });

      // A 4xx from the cluster stays the cluster's own Status (409 for a stale resourceVersion).
      const conflict = await viaKpass(kpass, "c1", `${base}/methods`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "methods", namespace: "default", resourceVersion: "1" }, data: {} }),
      });
      expect(conflict.status).toBe(409);
      expect(((await conflict.json()) as StatusBody).reason).toBe("Conflict");

      const del = await viaKpass(kpass, "c1", `${base}/methods`, { method: "DELETE" });
      expect(del.status).toBe(200);
      expect(((await del.json()) as { status: string }).status).toBe("Success");
      expect(configMap(fixture, "default", "methods")).toBeUndefined();

      const gone = await viaKpass(kpass, "c1", `${base}/methods`);
      const goneDirect = await direct(fixture, FIXTURE_TOKEN, `${base}/methods`);
      expect(gone.status).toBe(404);
      const goneText = await gone.text();
      expect(goneText).toBe(await goneDirect.text());
      const status = JSON.parse(goneText) as StatusBody;
      expect(status).toMatchObject({ kind: "Status", code: 404, reason: "NotFound", message: 'configmaps "methods" not found', details: { name: "methods", kind: "configmaps" } });

      for (const method of ["POST", "GET", "PUT", "PATCH", "DELETE"]) {
        expect(fixture.requests.some((r) => r.method === method && r.path.startsWith(base))).toBe(true);
      }
    });

    test("client identity headers are dropped, Authorization replaced; only allowlisted headers pass", async () => {
      const marker = `hygiene-${crypto.randomUUID()}`;
      const res = await viaKpass(kpass, "c1", `/api/v1/namespaces/default/pods?marker=${marker}`, {
        headers: {
          "X-Forwarded-For": "203.0.113.7",
          "X-Forwarded-Host": "evil.example",
          "X-Forwarded-Proto": "http",
          "X-Forwarded-User": "root",
          "X-Remote-User": "system:admin",
          "X-Remote-Group": "system:masters",
          "X-Remote-Extra-Scopes": "all",
          "X-Kpass-Test": "drop-me",
          "Kubectl-Session": "keep-me",
        },
      });
      expect(res.status).toBe(200);
      const seen = lastRequest(fixture, (r) => r.query.includes(marker));
      expect(seen).toBeDefined();
      const names = Object.keys(seen!.headers);
      expect(names.filter((n) => n.startsWith("x-forwarded-") || n.startsWith("x-remote-"))).toEqual([]);
      expect(header(seen, "authorization")).toBe(`Bearer ${FIXTURE_TOKEN}`);
      // Headers are an allowlist: what Kubernetes clients send passes, anything else stays behind.
      expect(header(seen, "kubectl-session")).toBe("keep-me");
      expect(header(seen, "x-kpass-test")).toBeUndefined();
    });

    test("the admin pass may impersonate: Impersonate-User reaches the cluster as sent", async () => {
      const res = await viaKpass(kpass, "c1", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
        method: "POST",
        headers: { "content-type": "application/json", "Impersonate-User": "alice", "Impersonate-Group": "devs" },
        body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
      });
      expect(res.status).toBe(201);
      const review = (await res.json()) as { status: { userInfo: { username: string; groups: string[] } } };
      expect(review.status.userInfo.username).toBe("alice");
      expect(review.status.userInfo.groups).toContain("devs");
      const seen = lastRequest(fixture, (r) => r.path === "/apis/authentication.k8s.io/v1/selfsubjectreviews");
      expect(header(seen, "authorization")).toBe(`Bearer ${FIXTURE_TOKEN}`);
    });

    test("the client's Accept-Encoding reaches the cluster unchanged", async () => {
      const marker = `enc-${crypto.randomUUID()}`;
      await (await viaKpass(kpass, "c1", `/api/v1/namespaces/default/configmaps?m=${marker}`, { headers: { "accept-encoding": "gzip" } })).arrayBuffer();
      expect(header(lastRequest(fixture, (r) => r.query.includes(marker)), "accept-encoding")).toBe("gzip");
    });
  });

  test("the cluster saw only its stored token, never the client's kpass token", () => {
    expect(fixture.requests.length).toBeGreaterThan(50);
    const authorizations = new Set(fixture.requests.map((r) => header(r, "authorization")));
    expect([...authorizations]).toEqual([`Bearer ${FIXTURE_TOKEN}`]);
    const leaked = fixture.requests.filter((r) => JSON.stringify(r.headers).includes(kpass.adminToken));
    expect(leaked).toEqual([]);
  });
});

// -------------------------------------------------------------------------------------------------

describe("proxy: client-certificate clusters", () => {
  let fixture: TestCluster;
  let kpass: KpassProcess;
  let good: Awaited<ReturnType<typeof clientCredential>>;
  let other: Awaited<ReturnType<typeof clientCredential>>;
  let home: string;

  beforeAll(async () => {
    [good, other] = await Promise.all([clientCredential(), clientCredential()]);
    fixture = await startTestCluster({ credential: { type: "clientCertificate", clientCa: good.ca.certPem } });
    kpass = await startKpass();
    await registerCluster(kpass, clusterManifest("cert-ok", fixture, { client: good.client }));
    await registerCluster(kpass, clusterManifest("cert-wrong", fixture, { client: other.client }));
    await registerCluster(kpass, clusterManifest("cert-none", fixture, { token: "not-a-certificate" }));
    await registerCluster(kpass, clusterManifest("cert-rotate", fixture, { client: other.client }));
    home = freshHome();
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
    if (home) removeDataDir(home);
  });

  for (const version of VERSIONS) {
    test(`kubectl ${version} get pods through a cluster that wants kpass's client certificate`, async () => {
      const kubeconfig = writeKubeconfig(kpass, kpass.adminToken, { ok: proxyUrl(kpass, "cert-ok") });
      const result = await runKubectl(version, ["--kubeconfig", kubeconfig, "get", "pods", "-A", "-o", "name"], { env: { HOME: home } });
      expect(result.stderr).toBe("");
      expect(result.stdout.trim().split("\n").sort()).toEqual(["pod/api-0", "pod/db-0", "pod/web-0", "pod/worker-0"]);
    });

    test(`kubectl ${version} through a cluster registered with the wrong certificate fails with a Status`, async () => {
      const kubeconfig = writeKubeconfig(kpass, kpass.adminToken, { wrong: proxyUrl(kpass, "cert-wrong") });
      const result = await runKubectl(version, ["--kubeconfig", kubeconfig, "get", "pods", "-n", "default"], { env: { HOME: home } });
      expect(result.exitCode).not.toBe(0);
      expect(result.stdout).toBe("");
      // Discovery errors show only the Status reason (client-go's Result.Raw() drops the message)…
      expect(result.stderr).toMatch(/Error from server \((ServiceUnavailable|BadGateway|InternalError)\)/);
      // …a plain request shows kpass's message, which names the cluster. (`--raw` takes a path from
      // the host root, ignoring the server URL's path, so it carries the proxy prefix itself.)
      const raw = await runKubectl(version, ["--kubeconfig", kubeconfig, "get", "--raw", `${CLUSTERS}/cert-wrong/proxy/api/v1/namespaces/default/pods`], { env: { HOME: home } });
      expect(raw.exitCode).not.toBe(0);
      expect(raw.stderr).toContain('cluster "cert-wrong"');
    });
  }

  test("no Authorization header at all reaches a certificate cluster (the client's token is dropped)", () => {
    const served = fixture.requests.filter((r) => r.path.startsWith("/api"));
    expect(served.length).toBeGreaterThan(0);
    expect(served.filter((r) => r.headers.authorization !== undefined)).toEqual([]);
  });

  for (const name of ["cert-wrong", "cert-none"]) {
    test(`${name}: fetch gets a Status naming the cluster`, async () => {
      const res = await viaKpass(kpass, name, "/api/v1/namespaces/default/pods");
      expect(res.status).toBeGreaterThanOrEqual(400);
      const status = (await res.json()) as StatusBody;
      expect(status.kind).toBe("Status");
      expect(status.code).toBe(res.status);
      expect(status.message).toContain(name);
    });
  }

  test("rotating the client certificate rebuilds the connection pool, both ways", async () => {
    const path = "/api/v1/namespaces/default/pods/web-0";
    const b64 = (text: string) => Buffer.from(text).toString("base64");
    const setCertificate = async (credential: Awaited<ReturnType<typeof clientCredential>>) => {
      const res = await kpass.api("PATCH", `${CLUSTERS}/cert-rotate`, { spec: { access: { credential: { type: "X509Certificate", x509: { certificate: b64(credential.client.certPem), privateKey: b64(credential.client.keyPem) } } } } }, {
        headers: { "content-type": "application/merge-patch+json" },
      });
      expect(res.status).toBe(200);
    };
    expect((await viaKpass(kpass, "cert-rotate", path)).status).toBeGreaterThanOrEqual(500);
    await setCertificate(good);
    const ok = await viaKpass(kpass, "cert-rotate", path);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as KubeObject).metadata.name).toBe("web-0");
    // Warm the pool with the good certificate, then take it away: the old connections must go.
    for (let i = 0; i < 3; i++) expect((await viaKpass(kpass, "cert-rotate", path)).status).toBe(200);
    await setCertificate(other);
    const after = await viaKpass(kpass, "cert-rotate", path);
    expect(after.status).toBeGreaterThanOrEqual(500);
    expect(((await after.json()) as StatusBody).message).toContain("cert-rotate");
  });
});

// -------------------------------------------------------------------------------------------------

describe("proxy: credential rotation (token)", () => {
  let fixture: TestCluster;
  let kpass: KpassProcess;

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: "right-token" } });
    kpass = await startKpass();
    await registerCluster(kpass, clusterManifest("rot", fixture, { token: "wrong-token" }));
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
  });

  test("a wrong stored token gets the cluster's 401; a merge PATCH of the Cluster fixes the next request", async () => {
    const path = "/api/v1/namespaces/default/configmaps/app-config";
    const denied = await viaKpass(kpass, "rot", path);
    expect(denied.status).toBe(401);
    expect((await denied.json()) as StatusBody).toMatchObject({ kind: "Status", code: 401, reason: "Unauthorized" });
    expect(header(lastRequest(fixture, (r) => r.path === path), "authorization")).toBe("Bearer wrong-token");

    const patched = await kpass.api("PATCH", `${CLUSTERS}/rot`, { spec: { access: { credential: { serviceAccountToken: "right-token" } } } }, {
      headers: { "content-type": "application/merge-patch+json" },
    });
    expect(patched.status).toBe(200);

    const ok = await viaKpass(kpass, "rot", path);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { data: Record<string, string> }).data).toEqual({ greeting: "hello" });
    expect(header(lastRequest(fixture, (r) => r.path === path), "authorization")).toBe("Bearer right-token");
  });
});

// -------------------------------------------------------------------------------------------------

describe("proxy: upstream failures and encodings", () => {
  let kpass: KpassProcess;
  let fixture: TestCluster;
  let silent: TCPSocketListener<undefined>;
  const silentSockets = new Set<{ end(): void }>();
  let gzipServer: HttpsServer;
  let gzipUrl: string;
  let gzipCa: string;
  const gzipBody = JSON.stringify({ kind: "ConfigMapList", apiVersion: "v1", metadata: {}, items: Array.from({ length: 50 }, (_, i) => ({ metadata: { name: `cm-${i}` }, data: { v: "z".repeat(100) } })) });
  const gzipped = gzipSync(gzipBody);
  const gzipSeen: { acceptEncoding?: string; authorization?: string }[] = [];
  const hanging: { openedAt: number; closedAt?: number }[] = [];

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: "t" } });
    kpass = await startKpass();

    // A port that accepted TCP once and is now closed.
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const closedPort = probe.port;
    probe.stop(true);

    // A server that accepts TCP and never says a word (no TLS handshake, no response).
    silent = Bun.listen<undefined>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (s) => void silentSockets.add(s),
        data() {},
        close: (s) => void silentSockets.delete(s),
      },
    });

    // A cluster-like server that gzips when asked (to see kpass pass encoded bytes through), and
    // that never answers /hang (to see what happens to a request whose client gives up first).
    const ca = await createCertificateAuthority("gzip-upstream-ca");
    const serving = await issueServingCertificate(ca, { commonName: "gzip-upstream", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    gzipCa = ca.certPem;
    gzipServer = createHttpsServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      if (req.url?.startsWith("/hang")) {
        const entry: { openedAt: number; closedAt?: number } = { openedAt: performance.now() };
        hanging.push(entry);
        res.on("close", () => (entry.closedAt ??= performance.now()));
        return;
      }
      const acceptEncoding = req.headers["accept-encoding"];
      gzipSeen.push({ acceptEncoding, authorization: req.headers.authorization });
      if (acceptEncoding?.includes("gzip")) {
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip", "content-length": gzipped.length });
        res.end(gzipped);
      } else {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(gzipBody) });
        res.end(gzipBody);
      }
    });
    await new Promise<void>((resolve) => gzipServer.listen(0, "127.0.0.1", resolve));
    const address = gzipServer.address() as { port: number };
    gzipUrl = `https://127.0.0.1:${address.port}`;

    const otherCa = await createCertificateAuthority("some-other-ca");
    await registerCluster(kpass, manifestFor("closed", { url: `https://127.0.0.1:${closedPort}`, caPem: fixture.caPem }, { token: "t" }));
    await registerCluster(kpass, manifestFor("wrong-ca", { url: fixture.url, caPem: otherCa.certPem }, { token: "t" }));
    await registerCluster(kpass, manifestFor("silent", { url: `https://127.0.0.1:${silent.port}`, caPem: fixture.caPem }, { token: "t" }));
    await registerCluster(kpass, manifestFor("gzip", { url: gzipUrl, caPem: gzipCa }, { token: "gz" }));
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    for (const s of silentSockets) s.end();
    silent?.stop(true);
    await new Promise<void>((resolve) => (gzipServer ? gzipServer.close(() => resolve()) : resolve()));
    (gzipServer as unknown as { closeAllConnections?: () => void })?.closeAllConnections?.();
    if (kpass) removeDataDir(kpass.dataDir);
  });

  async function expectStatus(res: Response, code: number, ...mentions: (string | RegExp)[]): Promise<StatusBody> {
    const text = await res.text();
    expect(res.status).toBe(code);
    expect(res.headers.get("content-type")).toContain("application/json");
    const status = JSON.parse(text) as StatusBody;
    expect(status.kind).toBe("Status");
    expect(status.code).toBe(code);
    for (const m of mentions) expect(status.message).toMatch(m);
    expect(text).not.toMatch(/\n\s+at /); // no stack traces
    return status;
  }

  test("unknown cluster: 404 Status naming it", async () => {
    await expectStatus(await viaKpass(kpass, "no-such-cluster", "/api/v1/pods"), 404, "no-such-cluster");
  });

  test("closed port: 503 Status naming the cluster, fast", async () => {
    const started = performance.now();
    const res = await viaKpass(kpass, "closed", "/api/v1/pods");
    const elapsed = performance.now() - started;
    await expectStatus(res, 503, '"closed"');
    expect(elapsed).toBeLessThan(2_000);
  });

  test("cluster behind a CA other than its caBundle: 502 Status saying TLS", async () => {
    const started = performance.now();
    const res = await viaKpass(kpass, "wrong-ca", "/api/v1/pods");
    const elapsed = performance.now() - started;
    await expectStatus(res, 502, /TLS/, '"wrong-ca"');
    expect(elapsed).toBeLessThan(2_000);
    expect(fixture.requests.filter((r) => r.path === "/api/v1/pods")).toEqual([]);
  });

  test("a port that accepts TCP but never answers: 503 after the upstream timeout (5 s)", async () => {
    const started = performance.now();
    const res = await viaKpass(kpass, "silent", "/api/v1/pods");
    const elapsed = performance.now() - started;
    await expectStatus(res, 503, '"silent"');
    expect(elapsed).toBeGreaterThan(4_000);
    expect(elapsed).toBeLessThan(8_000);
  }, 15_000);

  test("a client that gives up before the cluster answers cancels the upstream request at once", async () => {
    const outcome = await viaKpass(kpass, "gzip", "/hang", { signal: AbortSignal.timeout(500) }).then(
      (res) => `answered ${res.status}`,
      (error: Error) => error.name,
    );
    expect(outcome).toBe("TimeoutError");
    const abortedAt = performance.now();
    expect(hanging).toHaveLength(1);
    // Well before kpass's own 5 s upstream timeout would end it.
    const closed = await eventually(() => hanging[0]!.closedAt, 2_000);
    expect(closed - abortedAt).toBeLessThan(1_500);
  });

  test("gzip from the cluster passes through as the same bytes and encoding", async () => {
    const res = await viaKpass(kpass, "gzip", "/api/v1/configmaps", { headers: { "accept-encoding": "gzip" }, decompress: false });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-encoding")).toBe("gzip");
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.equals(gzipped)).toBe(true);
    expect(gzipSeen.at(-1)).toEqual({ acceptEncoding: "gzip", authorization: "Bearer gz" });

    const plain = await viaKpass(kpass, "gzip", "/api/v1/configmaps", { headers: { "accept-encoding": "identity" } });
    expect(gzipSeen.at(-1)?.acceptEncoding).toBe("identity");
    expect(plain.headers.get("content-encoding")).toBeNull();
    expect(await plain.text()).toBe(gzipBody);
  });
});

// -------------------------------------------------------------------------------------------------

describe("proxy: large LIST responses", () => {
  const COUNT = 2_000;
  const VALUE = "v".repeat(10_500);
  let fixture: TestCluster;
  let kpass: KpassProcess;
  let home: string;
  let kubeconfig: string;

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: "big" } });
    fixture.store.create(NAMESPACES, { apiVersion: "v1", kind: "Namespace", metadata: { name: "bulk" } });
    for (let i = 0; i < COUNT; i++) {
      fixture.store.create(CONFIGMAPS, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `bulk-${String(i).padStart(4, "0")}`, namespace: "bulk" }, data: { value: VALUE } });
    }
    kpass = await startKpass();
    await registerCluster(kpass, clusterManifest("big", fixture, { token: "big" }));
    kubeconfig = writeKubeconfig(kpass, kpass.adminToken, { big: proxyUrl(kpass, "big") });
    home = freshHome();
  });

  afterAll(async () => {
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
    if (home) removeDataDir(home);
  });

  test("a ≥ 20 MB LIST arrives byte-identical to the cluster's", async () => {
    const path = "/api/v1/namespaces/bulk/configmaps";
    const [proxied, straight] = await Promise.all([viaKpass(kpass, "big", path), direct(fixture, "big", path)]);
    expect(proxied.status).toBe(200);
    const [a, b] = await Promise.all([proxied.arrayBuffer(), straight.arrayBuffer()]);
    expect(a.byteLength).toBeGreaterThan(20 * 1024 * 1024);
    expect(a.byteLength).toBe(b.byteLength);
    expect(createHash("sha256").update(new Uint8Array(a)).digest("hex")).toBe(createHash("sha256").update(new Uint8Array(b)).digest("hex"));
  });

  for (const version of VERSIONS) {
    test(`kubectl ${version} get cm -o name counts ${COUNT} (one 21 MB page, and paginated)`, async () => {
      const expected = Array.from({ length: COUNT }, (_, i) => `configmap/bulk-${String(i).padStart(4, "0")}`);
      const whole = await runKubectl(version, ["--kubeconfig", kubeconfig, "get", "configmaps", "-n", "bulk", "-o", "name", "--chunk-size=0"], { env: { HOME: home }, timeoutMs: 45_000 });
      expect(whole.stderr).toBe("");
      expect(whole.stdout.trim().split("\n")).toEqual(expected);

      const before = fixture.requests.length;
      const paged = await runKubectl(version, ["--kubeconfig", kubeconfig, "get", "configmaps", "-n", "bulk", "-o", "name"], { env: { HOME: home }, timeoutMs: 45_000 });
      expect(paged.stderr).toBe("");
      expect(paged.stdout.trim().split("\n")).toEqual(expected);
      const pages = fixture.requests.slice(before).filter((r) => r.path === "/api/v1/namespaces/bulk/configmaps");
      expect(pages).toHaveLength(4);
      expect(pages.slice(1).every((r) => new URLSearchParams(r.query).has("continue"))).toBe(true);
    }, 60_000);
  }
});
