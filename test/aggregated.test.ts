/**
 * Aggregated mode (issue #13): kpass behind a host kube-apiserver's aggregator. The host is
 * test/fixture/host.ts (ConfigMap, TokenReview, SubjectAccessReview from a rule table, and an
 * aggregator stand-in that forwards with the front-proxy certificate and X-Remote-* headers).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { startHost, type HostFixture } from "./fixture/host.ts";
import { createStreamUpgradeHandler, type StreamUpgradeFixture } from "./fixture/streams/index.ts";
import { execExitCodeScenario, execOutputScenario, portForwardScenario } from "./fixture/streams/scenarios.ts";
import { runKubectl, type KubectlVersion } from "./harness/kubectl.ts";
import { auditLines, clusterManifest, createPass, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
let prod: TestCluster;
let staging: TestCluster;
let host: HostFixture;
let kpass: KpassProcess;
let streams: StreamUpgradeFixture;

beforeAll(async () => {
  streams = createStreamUpgradeHandler();
  [prod, staging] = await Promise.all([
    startTestCluster({ credential: { type: "token", token: "prod-token" }, upgrade: streams.handler }),
    startTestCluster({ credential: { type: "token", token: "staging-token" } }),
  ]);
  host = await startHost({
    users: {
      "alice-token": { name: "alice", groups: ["devs", "system:authenticated"], extra: { scopes: ["a", "b"] } },
      "carol-token": { name: "carol", groups: ["system:authenticated"] },
      "bob-host-token": { name: "system:serviceaccount:ci:deployer", groups: ["system:serviceaccounts", "system:authenticated"] },
    },
    rules: [
      { user: "alice", verbs: ["get", "list", "watch", "create"], resource: "clusters", subresource: "proxy", names: ["prod"] },
      { user: "alice", verbs: ["get", "list"], resource: "clusters" },
      { group: "system:authenticated", verbs: ["get"], paths: ["/apis/cluster.kpass.dev/*", "/openapi/*"] },
      { user: "system:serviceaccount:ci:deployer", verbs: ["list", "get"], resource: "clusters", subresource: "proxy", names: ["staging"] },
    ],
  });
  kpass = await startKpass({ args: ["--aggregated", "--host-kubeconfig", host.kubeconfigPath, "--host-refresh", "0.2s", "--audit", "file"] });
  host.setKpass(kpass.url, kpass.caPem);
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("prod", prod, { token: "prod-token" }))).status).toBe(201);
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("staging", staging, { token: "staging-token" }))).status).toBe(201);
});

afterAll(async () => {
  await kpass?.stop();
  host?.stop();
  await Promise.all([prod?.stop(), staging?.stop()]);
  await streams?.close();
  if (kpass) removeDataDir(kpass.dataDir);
});

/** Through the aggregator stand-in, as a host user (by host token). */
function viaHost(token: string, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(host.url + path, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string> | undefined) }, tls: { ca: host.caPem } } as RequestInit);
}

/** Straight to kpass, with whatever credential the test chooses. */
function direct(path: string, headers: Record<string, string>, cert?: { certPem: string; keyPem: string }): Promise<Response> {
  return fetch(kpass.url + path, { headers, tls: { ca: kpass.caPem, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) } } as RequestInit);
}

function lastRequest(cluster: TestCluster, path: string) {
  return [...cluster.requests].reverse().find((r) => r.path === path);
}

describe("host users through the aggregator", () => {
  test("the ConfigMap was read at start", () => {
    expect(host.configMapReads()).toBeGreaterThanOrEqual(1);
  });

  for (const version of ["1.27", "1.33"] as KubectlVersion[]) {
    test(`kubectl ${version}: an allowed host user lists pods of prod; the cluster sees alice by impersonation and no X-Remote-*`, async () => {
      const config = host.userKubeconfig("alice-token", `${host.url}${CLUSTERS}/prod/proxy`);
      const result = await runKubectl(version, ["--kubeconfig", config, "get", "pods", "-n", "default"]);
      expect(result.stderr).toBe("");
      expect(result.exitCode).toBe(0);
      const seen = lastRequest(prod, "/api/v1/namespaces/default/pods")!;
      expect(seen).toBeDefined();
      expect(seen.headers["impersonate-user"]).toBe("alice");
      const groups = seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === "impersonate-group").length;
      expect(groups).toBe(2);
      expect(Object.keys(seen.headers).filter((h) => h.startsWith("x-remote-"))).toEqual([]);
      expect(seen.headers.authorization).toBe("Bearer prod-token");
      // Cached for 10 s, so the second kubectl may not ask again.
      const review = host.accessReviews.find((r) => r.user === "alice" && r.resourceAttributes?.subresource === "proxy" && r.resourceAttributes.verb === "list")!;
      expect(review.resourceAttributes).toMatchObject({ verb: "list", group: "cluster.kpass.dev", version: "v1beta1", resource: "clusters", subresource: "proxy", name: "prod", namespace: "" });
      expect(review.groups).toEqual(["devs", "system:authenticated"]);
      expect(review.extra).toEqual({ scopes: ["a", "b"] });
    });

    test(`kubectl ${version}: the same user is refused staging with a kube-style 403`, async () => {
      const config = host.userKubeconfig("alice-token");
      // Not `get pods`: kubectl prints a refused discovery as "Forbidden: unknown", as it does for kube-apiserver.
      const result = await runKubectl(version, ["--kubeconfig", config, "get", "--raw", `${CLUSTERS}/staging/proxy/api/v1/namespaces/default/pods`]);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toContain(`clusters.cluster.kpass.dev "staging" is forbidden: User "alice" cannot list resource "clusters/proxy" in API group "cluster.kpass.dev" at the cluster scope`);
    });
  }

  test("a refusal is a Status object", async () => {
    const response = await viaHost("carol-token", `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`);
    expect(response.status).toBe(403);
    const body = await response.json();
    expect(body).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "Forbidden", code: 403, details: { name: "prod", group: "cluster.kpass.dev", kind: "clusters" } });
  });

  test("kpass's own API is authorized by the host with the ordinary attributes", async () => {
    const allowed = await viaHost("alice-token", CLUSTERS);
    expect(allowed.status).toBe(200);
    const names = ((await allowed.json()) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name).sort();
    expect(names).toEqual(["prod", "staging"]);
    expect(host.accessReviews.findLast((r) => r.user === "alice" && r.resourceAttributes?.resource === "clusters" && !r.resourceAttributes.subresource)!.resourceAttributes).toMatchObject({ verb: "list", group: "cluster.kpass.dev" });
    const refused = await viaHost("carol-token", CLUSTERS);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain(`User "carol" cannot list resource "clusters" in API group "cluster.kpass.dev" at the cluster scope`);
    const write = await viaHost("alice-token", `${CLUSTERS}/prod`, { method: "DELETE" });
    expect(write.status).toBe(403);
  });

  for (const version of ["1.27", "1.33"] as KubectlVersion[]) {
    test(`kubectl ${version} get clusters through the host: the same columns as on kpass directly`, async () => {
      const viaHostResult = await runKubectl(version, ["--kubeconfig", host.userKubeconfig("alice-token"), "get", "clusters"]);
      expect(viaHostResult.stderr).toBe("");
      expect(viaHostResult.exitCode).toBe(0);
      const directResult = await runKubectl(version, ["--kubeconfig", kpass.adminKubeconfig, "get", "clusters"]);
      expect(directResult.exitCode).toBe(0);
      const header = (text: string) => text.split("\n")[0]!.split(/\s+/);
      expect(header(viaHostResult.stdout)).toEqual(header(directResult.stdout));
      expect(viaHostResult.stdout).toContain("prod");
      expect(viaHostResult.stdout).toContain("staging");
      const resources = await runKubectl(version, ["--kubeconfig", host.userKubeconfig("alice-token"), "api-resources", "--api-group", "cluster.kpass.dev", "-o", "name"]);
      expect(resources.stderr).toBe("");
      expect(resources.exitCode).toBe(0);
      expect(resources.stdout.split("\n")).toContain("clusters.cluster.kpass.dev");
      // Discovery of kpass's group is asked of the host like any non-resource path.
      expect(host.accessReviews.some((r) => r.user === "alice" && r.nonResourceAttributes?.path === "/apis/cluster.kpass.dev/v1beta1")).toBe(true);
    });
  }

  test("kubectl explain cluster.spec through the host", async () => {
    const result = await runKubectl("1.33", ["--kubeconfig", host.userKubeconfig("alice-token"), "explain", "clusters.spec", "--api-version", "cluster.kpass.dev/v1beta1"]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("access");
  });

  test("host users' requests are audited under their host user name", async () => {
    const lines = await auditLines(kpass, (all) => all.some((l) => l.user === "alice" && l.cluster === "prod"));
    const line = lines.find((l) => l.user === "alice" && l.cluster === "prod");
    expect(line.pass).toBe("");
    expect(lines.some((l) => l.user === "alice" && l.cluster === "staging" && l.status === 403)).toBe(true);
  });

  test("host users never see cluster credentials", async () => {
    const response = await viaHost("alice-token", `${CLUSTERS}/prod`);
    expect(response.status).toBe(200);
    expect(JSON.stringify(await response.json())).not.toContain("prod-token");
  });
});

describe("upgrades through the aggregator", () => {
  for (const version of ["1.27", "1.33"] as KubectlVersion[]) {
    test(`kubectl ${version} exec through the stand-in reaches the member cluster as the host user`, async () => {
      const target = { kubeconfig: host.userKubeconfig("alice-token", `${host.url}${CLUSTERS}/prod/proxy`), context: "host" };
      await execOutputScenario(version, target);
      await execExitCodeScenario(version, target);
      const exec = [...prod.requests].reverse().find((r) => r.path.endsWith("/exec"))!;
      expect(exec.headers["impersonate-user"]).toBe("alice");
      expect(host.accessReviews.some((r) => r.user === "alice" && r.resourceAttributes?.verb === "create" && r.resourceAttributes.subresource === "proxy" && r.resourceAttributes.name === "prod")).toBe(true);
      expect(Object.keys(exec.headers).filter((h) => h.startsWith("x-remote-"))).toEqual([]);
    }, 60_000);

    test(`kubectl ${version} port-forward through the stand-in`, async () => {
      await portForwardScenario(version, { kubeconfig: host.userKubeconfig("alice-token", `${host.url}${CLUSTERS}/prod/proxy`), context: "host" });
    }, 60_000);
  }

  test("exec by a host user the host refuses for that cluster is a 403", async () => {
    const before = prod.requests.filter((r) => r.path.endsWith("/exec")).length;
    const result = await runKubectl("1.33", ["--kubeconfig", host.userKubeconfig("carol-token", `${host.url}${CLUSTERS}/prod/proxy`), "exec", "web-0", "--", "echo", "hi"]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stdout).toBe("");
    const refused = await viaHost("carol-token", `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods/web-0/exec?command=echo&stdout=true`, { method: "POST" });
    expect(refused.status).toBe(403);
    expect(prod.requests.filter((r) => r.path.endsWith("/exec")).length).toBe(before);
  });
});

describe("can-i and whoami by host users", () => {
  for (const version of ["1.27", "1.33"] as const) {
    test(`kubectl ${version}: can-i is the host's decision on clusters/proxy and the member cluster's together`, async () => {
      const alice = host.userKubeconfig("alice-token", `${host.url}${CLUSTERS}/prod/proxy`);
      const canI = (args: string[]) => runKubectl(version, ["--kubeconfig", alice, "auth", "can-i", ...args]);
      // The host lets alice list on prod's proxy; the member cluster (no RBAC of its own) allows it.
      const list = await canI(["list", "pods"]);
      expect([list.exitCode, list.stdout.trim()]).toEqual([0, "yes"]);
      // The host does not let alice delete through prod: kpass says no without asking the cluster.
      const before = prod.requests.filter((r) => r.path.endsWith("/selfsubjectaccessreviews")).length;
      const del = await canI(["delete", "pods"]);
      expect(del.exitCode).toBe(1);
      expect(del.stdout.trim()).toStartWith('no - the host does not allow delete on clusters/proxy "prod"');
      expect(prod.requests.filter((r) => r.path.endsWith("/selfsubjectaccessreviews")).length).toBe(before);
      // Someone the host lets nowhere near prod cannot ask at all.
      const carol = await runKubectl(version, ["--kubeconfig", host.userKubeconfig("carol-token", `${host.url}${CLUSTERS}/prod/proxy`), "auth", "can-i", "list", "pods"]);
      expect(carol.exitCode).not.toBe(0);
      expect(carol.stderr).toContain("forbidden");
      // whoami shows the host user as the member cluster sees it, with no pass named.
      const who = await runKubectl(version, ["--kubeconfig", alice, "auth", "whoami", "-o", "json"]);
      expect(who.exitCode, who.stderr).toBe(0);
      const info = JSON.parse(who.stdout).status.userInfo;
      expect(info.username).toBe("alice");
      expect(info.extra?.["kpass.dev/pass"]).toBeUndefined();
    }, 60_000);
  }
});

describe("RBAC writes by host users", () => {
  test("are left to the member cluster, which sees the impersonated host user (no pass rules to check against)", async () => {
    const role = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "r", namespace: "default" }, rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }] };
    const response = await viaHost("alice-token", `${CLUSTERS}/prod/proxy/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles?dryRun=All`, { method: "POST", body: JSON.stringify(role), headers: { "content-type": "application/json" } });
    // The fixture cluster has no RBAC objects (404), but it got the request: kpass did not refuse it.
    expect(response.status).not.toBe(403);
    const seen = [...prod.requests].reverse().find((r) => r.method === "POST" && r.path.endsWith("/roles"))!;
    expect(seen).toBeDefined();
    expect(seen.headers["impersonate-user"]).toBe("alice");
  });
});

describe("dry-run through the aggregator", () => {
  test("kubectl create --dry-run=server reaches the member cluster with dryRun=All", async () => {
    const config = host.userKubeconfig("alice-token", `${host.url}${CLUSTERS}/prod/proxy`);
    const result = await runKubectl("1.33", ["--kubeconfig", config, "-n", "default", "create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server", "-o", "name"]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout.trim()).toBe("configmap/dry");
    const seen = [...prod.requests].reverse().find((r) => r.method === "POST" && r.path === "/api/v1/namespaces/default/configmaps")!;
    expect(new URLSearchParams(seen.query).get("dryRun")).toBe("All");
    expect(seen.headers["impersonate-user"]).toBe("alice");
  });
});

describe("who counts as the aggregator", () => {
  test("forged X-Remote-User without the front-proxy certificate is ignored: 401", async () => {
    const response = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, { "x-remote-user": "alice", "x-remote-group": "system:masters" });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { kind: string }).kind).toBe("Status");
  });

  test("the front-proxy certificate with the headers is the aggregator", async () => {
    const response = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, { "x-remote-user": "alice" }, host.frontProxyClient);
    expect(response.status).toBe(200);
  });

  test("each X-Remote-Group line is one group (a comma inside stays), extras are decoded", async () => {
    const { connect } = await import("node:tls");
    const url = new URL(kpass.url);
    const socket = connect({ host: url.hostname, port: Number(url.port), ca: kpass.caPem, cert: host.frontProxyClient.certPem, key: host.frontProxyClient.keyPem });
    await new Promise((resolve) => socket.once("secureConnect", resolve));
    socket.write(`GET ${CLUSTERS}/prod/proxy/api/v1/namespaces/default/secrets HTTP/1.1\r\nHost: kpass\r\nX-Remote-User: dave\r\nX-Remote-Group: team, with comma\r\nX-Remote-Group: ops\r\nX-Remote-Extra-Acme.com%2fProject: p1\r\nConnection: close\r\n\r\n`);
    let text = "";
    for await (const chunk of socket) text += String(chunk);
    expect(text.startsWith("HTTP/1.1 403")).toBe(true);
    const review = host.accessReviews.findLast((r) => r.user === "dave")!;
    expect(review.groups).toEqual(["team, with comma", "ops"]);
    expect(review.extra).toEqual({ "acme.com/project": ["p1"] });
  });

  test("a certificate of the front-proxy CA with a CN not allowed: 401", async () => {
    const response = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, { "x-remote-user": "alice" }, host.intruderClient);
    expect(response.status).toBe(401);
    expect(((await response.json()) as { message: string }).message).toContain(`"intruder" is not one of the allowed names`);
  });

  test("a pass token keeps meaning the pass, and its X-Remote-* never reach the cluster", async () => {
    const token = await createPass(kpass, "ops", { user: "ops-user", clusters: { names: ["prod"] }, roles: ["view"] });
    const response = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/configmaps`, { authorization: `Bearer ${token}`, "x-remote-user": "alice", "x-remote-group": "system:masters", "x-remote-extra-scopes": "x" });
    expect(response.status).toBe(200);
    const seen = lastRequest(prod, "/api/v1/namespaces/default/configmaps")!;
    expect(Object.keys(seen.headers).filter((h) => h.startsWith("x-remote-"))).toEqual([]);
    expect(seen.headers["impersonate-user"]).toBeUndefined();
  });

  test("a host token that is not a pass token is checked by TokenReview", async () => {
    const allowed = await direct(`${CLUSTERS}/staging/proxy/api/v1/namespaces/default/pods`, { authorization: "Bearer bob-host-token" });
    expect(allowed.status).toBe(200);
    expect(host.tokenReviews.some((r) => r.token === "bob-host-token")).toBe(true);
    expect(lastRequest(staging, "/api/v1/namespaces/default/pods")!.headers["impersonate-user"]).toBe("system:serviceaccount:ci:deployer");
    const refused = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, { authorization: "Bearer bob-host-token" });
    expect(refused.status).toBe(403);
    const unknown = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, { authorization: "Bearer nobody-token" });
    expect(unknown.status).toBe(401);
  });
});

describe("the stand-alone listener at the same time", () => {
  test("kubectl with the admin kubeconfig lists clusters, and a pass reaches its cluster", async () => {
    const clusters = await runKubectl("1.33", ["--kubeconfig", kpass.adminKubeconfig, "get", "clusters", "-o", "name"]);
    expect(clusters.exitCode).toBe(0);
    expect(clusters.stdout).toContain("prod");
    const token = await createPass(kpass, "viewer", { user: "viewer", clusters: { names: ["staging"] }, roles: ["view"] });
    const config = writeKubeconfig(kpass, token, { staging: proxyUrl(kpass, "staging") });
    const pods = await runKubectl("1.27", ["--kubeconfig", config, "get", "pods", "-n", "default"]);
    expect(pods.exitCode).toBe(0);
  });
});

describe("the front-proxy configuration is read again", () => {
  test("a change of requestheader-allowed-names on the host is taken up", async () => {
    const path = `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`;
    const reads = host.configMapReads();
    await eventually(() => (host.configMapReads() > reads ? true : undefined));
    host.setAllowedNames(["intruder"]);
    try {
      await eventually(async () => ((await direct(path, { "x-remote-user": "alice" }, host.intruderClient)).status === 200 ? true : undefined));
      expect((await direct(path, { "x-remote-user": "alice" }, host.frontProxyClient)).status).toBe(401);
    } finally {
      host.setAllowedNames(["front-proxy-client"]);
    }
    await eventually(async () => ((await direct(path, { "x-remote-user": "alice" }, host.frontProxyClient)).status === 200 ? true : undefined));
  });
});

describe("the front-proxy CA rotates", () => {
  test("the new CA's certificate is the aggregator's, the old one no longer; the stand-in keeps working", async () => {
    const path = `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`;
    const old = await host.rotateFrontProxyCa();
    // The listener is reopened to name the new CA; a connection attempt in that instant may fail.
    await eventually(async () => ((await direct(path, { "x-remote-user": "alice" }, host.frontProxyClient).catch(() => undefined))?.status === 200 ? true : undefined));
    expect((await direct(path, { "x-remote-user": "alice" }, old)).status).toBe(401);
    expect((await viaHost("alice-token", path)).status).toBe(200);
    // A Go client (kubectl) offers its certificate only when the listener names its CA: with the
    // new front-proxy certificate and no X-Remote-User, kpass says the front proxy named no user.
    const { writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const certFile = join(kpass.dataDir, "fp.crt");
    const keyFile = join(kpass.dataDir, "fp.key");
    writeFileSync(certFile, host.frontProxyClient.certPem);
    writeFileSync(keyFile, host.frontProxyClient.keyPem, { mode: 0o600 });
    const caFile = join(kpass.dataDir, "kpass-ca.crt");
    writeFileSync(caFile, kpass.caPem);
    const result = await runKubectl("1.33", ["--server", kpass.url, "--certificate-authority", caFile, "--client-certificate", certFile, "--client-key", keyFile, "get", "--raw", path]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain("the front proxy named no user");
  });
});

// Last: it stops kpass.
describe("shutdown", () => {
  test("a host user's watch holds a lease: SIGTERM ends it as a complete response", async () => {
    const response = await direct(`${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods?watch=true`, { "x-remote-user": "alice", "x-remote-group": "system:authenticated" }, host.frontProxyClient);
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    await reader.read(); // the first event: the watch is open
    kpass.signal("SIGTERM");
    let ended = false;
    for (let i = 0; i < 10_000 && !ended; i++) ended = (await reader.read()).done;
    expect(ended).toBe(true);
    expect(await kpass.exited).toBe(0);
  });
});
