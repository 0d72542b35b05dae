import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { runKubectl, type KubectlVersion } from "./harness/kubectl.ts";
import { auditLines, clusterManifest, eventually, removeDataDir, startKpass, writeKubeconfig, proxyUrl, type KpassProcess } from "./harness/kpass.ts";

const PASSES = "/apis/cluster.kpass.dev/v1beta1/passes";
const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
let prod: TestCluster;
let staging: TestCluster;
let secret: TestCluster;
let kpass: KpassProcess;

beforeAll(async () => {
  [prod, staging, secret] = await Promise.all([
    startTestCluster({ credential: { type: "token", token: "prod-token" } }),
    startTestCluster({ credential: { type: "token", token: "staging-token" } }),
    startTestCluster({ credential: { type: "token", token: "secret-token" } }),
  ]);
  kpass = await startKpass({ args: ["--audit", "file"] });
  for (const [name, cluster, token, labels] of [["prod", prod, "prod-token", { env: "prod" }], ["staging", staging, "staging-token", { env: "staging" }], ["secret", secret, "secret-token", { env: "secret" }]] as const) {
    expect((await kpass.api("POST", CLUSTERS, clusterManifest(name, cluster, { token }, { labels, impersonation: name === "staging" ? "user" : "none" }))).status).toBe(201);
  }
});

afterAll(async () => {
  await kpass?.stop();
  await Promise.all([prod?.stop(), staging?.stop(), secret?.stop()]);
  if (kpass) removeDataDir(kpass.dataDir);
});

function passManifest(name: string, spec: Record<string, unknown>) {
  return { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec };
}

async function createPass(name: string, spec: Record<string, unknown>): Promise<string> {
  const response = await kpass.api("POST", PASSES, passManifest(name, spec));
  const body = await response.json();
  expect(response.status).toBe(201);
  expect(body.status.token).toMatch(/^ey[\w-]+\.ey[\w-]+\.[\w-]+$/);
  return body.status.token;
}

async function kubeconfigOf(name: string): Promise<string> {
  const response = await kpass.api("GET", `${PASSES}/${name}/kubeconfig`);
  expect(response.status).toBe(200);
  const path = join(kpass.dataDir, `${name}.kubeconfig`);
  writeFileSync(path, await response.text());
  return path;
}

describe("creating passes and their kubeconfigs", () => {
  test("kubectl apply creates a pass and get passes shows NAME USER CLUSTERS EXPIRES AGE", async () => {
    const file = join(kpass.dataDir, "alice.yaml");
    writeFileSync(file, stringify(passManifest("alice", { user: "alice", groups: ["devs"], clusters: { names: ["prod", "staging"] }, roles: ["view"], namespaces: ["team-a"], ttl: "720h" })));
    const applied = await runKubectl("1.33", ["--kubeconfig", kpass.adminKubeconfig, "--context", "kpass", "create", "-f", file, "-o", "json"]);
    expect(applied.exitCode).toBe(0);
    expect(JSON.parse(applied.stdout).status.token).toMatch(/^ey/);
    const listed = await runKubectl("1.27", ["--kubeconfig", kpass.adminKubeconfig, "--context", "kpass", "get", "passes"]);
    const [header, ...rows] = listed.stdout.trim().split("\n");
    expect(header!.split(/\s+/)).toEqual(["NAME", "USER", "CLUSTERS", "EXPIRES", "AGE"]);
    const alice = rows.find((r) => r.startsWith("alice"))!.split(/\s+/);
    expect(alice.slice(0, 3)).toEqual(["alice", "alice", "prod,staging"]);
    expect(alice[3]).toMatch(/^(29|30)d/);
  });

  test("the CLI creates a pass (token printed once) and writes a kubeconfig with one context per cluster", async () => {
    const cli = (args: string[]) => {
      const p = Bun.spawn([process.execPath, "src/cli/main.ts", ...args, "--data", kpass.dataDir], { stdout: "pipe", stderr: "pipe" });
      return Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    };
    const [token, created, code] = await cli(["pass", "create", "bob", "--user", "bob", "--group", "ops", "--clusters", "prod,secret", "--role", "edit", "--ttl", "1h"]);
    expect(code).toBe(0);
    expect(created).toContain("shown once");
    expect(token.trim()).toMatch(/^ey/);
    const [kubeconfig, , exit] = await cli(["kubeconfig", "bob"]);
    expect(exit).toBe(0);
    const config = parse(kubeconfig);
    expect(config.contexts.map((c: { name: string }) => c.name)).toEqual(["prod", "secret", "kpass"]);
    expect(config["current-context"]).toBe("kpass");
    expect(config.clusters[0].cluster.server).toBe(`${kpass.url}/apis/cluster.kpass.dev/v1beta1/clusters/prod/proxy`);
    expect(Buffer.from(config.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toBe(kpass.caPem);
    expect(kubeconfig).not.toContain("insecure-skip-tls-verify");
    const path = join(kpass.dataDir, "bob-cli.kubeconfig");
    writeFileSync(path, kubeconfig);
    const pods = await runKubectl("1.33", ["--kubeconfig", path, "--context", "prod", "get", "pods", "-n", "default", "-o", "name"]);
    expect(pods.stdout).toContain("pod/web-0");
  });
});

for (const version of ["1.27", "1.33"] as const) {
  describe(`alice (view in team-a on prod and staging) with kubectl ${version}`, () => {
    let kubeconfig: string;
    const kubectl = (context: string, args: string[]) => runKubectl(version, ["--kubeconfig", kubeconfig, "--context", context, ...args]);

    beforeAll(async () => {
      kubeconfig = await kubeconfigOf("alice");
    });

    test("reads pods in team-a", async () => {
      const pods = await kubectl("prod", ["get", "pods", "-n", "team-a", "-o", "name"]);
      expect(pods.exitCode).toBe(0);
      expect(pods.stdout).toContain("pod/api-0");
    });

    test("delete, other namespaces, other clusters and exec are refused with reasons", async () => {
      const del = await kubectl("prod", ["delete", "pod", "api-0", "-n", "team-a"]);
      expect(del.exitCode).not.toBe(0);
      expect(del.stderr).toContain('Forbidden');
      // Worded as kube-apiserver words a refusal, then kpass's reason: which pass, which cluster.
      expect(del.stderr).toContain('pods "api-0" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "team-a": the pass "alice" on cluster "prod" does not allow it');
      const other = await kubectl("prod", ["get", "pods", "-n", "team-b"]);
      expect(other.stderr).toContain('pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-b"');
      const all = await kubectl("prod", ["get", "pods", "-A"]);
      expect(all.stderr).toContain('pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope');
      const server = `${kpass.url}/apis/cluster.kpass.dev/v1beta1/clusters/secret/proxy`;
      const unreached = await kubectl("prod", ["--server", server, "get", "pods", "-n", "team-a"]);
      expect(unreached.exitCode).not.toBe(0);
      // A cluster the pass does not reach does not exist for it (as on kpass's own API).
      expect(unreached.stderr).toContain("NotFound");
      const token = parse(readFileSync(kubeconfig, "utf8")).users[0].user.token as string;
      const direct = await kpass.api("GET", `${CLUSTERS}/secret/proxy/api/v1/namespaces/team-a/pods`, undefined, { token });
      expect(direct.status).toBe(404);
      expect((await direct.json()).message).toBe('clusters.cluster.kpass.dev "secret" not found');
      const exec = await kubectl("prod", ["exec", "-n", "team-a", "api-0", "--", "id"]);
      expect(exec.exitCode).not.toBe(0);
      expect(exec.stderr).toContain('pods "api-0" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "team-a"');
      expect(secret.requests.some((r) => r.path.includes("team-a"))).toBe(false);
    });

    test("sees only the clusters it reaches, without credentials", async () => {
      const clusters = await kubectl("kpass", ["get", "clusters", "-o", "json"]);
      const items = JSON.parse(clusters.stdout).items;
      expect(items.map((c: { metadata: { name: string } }) => c.metadata.name)).toEqual(["prod", "staging"]);
      expect(clusters.stdout).not.toContain("credential");
      expect(clusters.stdout).not.toContain("prod-token");
      const passes = await kubectl("kpass", ["get", "passes", "-o", "name"]);
      expect(passes.stdout.trim().split("\n")).toEqual(["pass.cluster.kpass.dev/alice"]);
      const create = await kubectl("kpass", ["delete", "cluster", "prod"]);
      expect(create.stderr).toContain("Forbidden");
    });
  });
}

describe("live edits, impersonation, revocation and expiry", () => {
  let token: string;
  let kubeconfig: string;
  const kubectl = (version: KubectlVersion, args: string[]) => runKubectl(version, ["--kubeconfig", kubeconfig, ...args]);

  beforeAll(async () => {
    token = await createPass("carol", { user: "carol", groups: ["devs", "qa"], clusters: { selector: { matchLabels: { env: "staging" } } }, rules: [{ verbs: ["get", "list"], apiGroups: [""], resources: ["configmaps"], namespaces: ["default"] }] });
    kubeconfig = writeKubeconfig(kpass, token, { staging: proxyUrl(kpass, "staging") });
  });

  test("a rule edit applies to the next request with the same token", async () => {
    const before = await kubectl("1.33", ["get", "pods", "-n", "default"]);
    expect(before.stderr).toContain('cannot list resource "pods"');
    const patched = await kpass.api("PATCH", `${PASSES}/carol`, { spec: { roles: ["view"] } }, { headers: { "content-type": "application/merge-patch+json" } });
    expect(patched.status).toBe(200);
    const after = await kubectl("1.33", ["get", "pods", "-n", "default", "-o", "name"]);
    expect(after.stdout).toContain("pod/web-0");
  });

  test("impersonation: user sends the pass's user and groups to the cluster", async () => {
    const before = staging.requests.length;
    await kubectl("1.27", ["get", "configmaps", "-n", "default"]);
    const seen = staging.requests.slice(before).find((r) => r.path === "/api/v1/namespaces/default/configmaps")!;
    expect(seen.headers["impersonate-user"]).toBe("carol");
    expect(String(seen.headers["impersonate-group"])).toMatch(/devs.*qa/);
    expect(seen.headers.authorization).toBe("Bearer staging-token");
  });

  test("--as is refused without an impersonate rule and honoured with one", async () => {
    const refused = await kubectl("1.33", ["get", "configmaps", "-n", "default", "--as", "dave"]);
    expect(refused.stderr).toContain('users "dave" is forbidden: User "carol" cannot impersonate resource "users" in API group "" at the cluster scope');
    await kpass.api("PATCH", `${PASSES}/carol`, { spec: { rules: [{ verbs: ["impersonate"], apiGroups: [""], resources: ["users"], resourceNames: ["dave"] }] } }, { headers: { "content-type": "application/merge-patch+json" } });
    const before = staging.requests.length;
    const allowed = await kubectl("1.33", ["get", "configmaps", "-n", "default", "--as", "dave", "-o", "name"]);
    expect(allowed.exitCode).toBe(0);
    const seen = staging.requests.slice(before).find((r) => r.path === "/api/v1/namespaces/default/configmaps")!;
    expect(seen.headers["impersonate-user"]).toBe("dave");
    const stillRefused = await kubectl("1.33", ["get", "configmaps", "-n", "default", "--as", "erin"]);
    expect(stillRefused.stderr).toContain('users "erin" is forbidden: User "carol" cannot impersonate resource "users"');
  });

  test("the audit log has a line per request with pass, user, cluster and verb, and no token", async () => {
    const lines = await auditLines(kpass, (all) => all.some((l) => l.impersonated === "dave"));
    const carol = lines.filter((l) => l.pass === "carol");
    expect(carol.some((l) => l.status === 200 && l.verb === "list" && l.resource === "configmaps" && l.cluster === "staging" && l.namespace === "default" && l.bytesOut > 0)).toBe(true);
    expect(carol.some((l) => l.status === 403 && l.message?.includes('cannot list resource "pods"'))).toBe(true);
    expect(carol.some((l) => l.impersonated === "dave")).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(token);
    expect(JSON.stringify(lines)).not.toContain("staging-token");
  });

  test("deleting the pass revokes its token at once", async () => {
    expect((await kpass.api("DELETE", `${PASSES}/carol`)).status).toBe(200);
    const after = await kubectl("1.33", ["get", "configmaps", "-n", "default"]);
    expect(after.exitCode).not.toBe(0);
    // kubectl words a 401 differently with a cold discovery cache.
    expect(after.stderr).toMatch(/Unauthorized|provide credentials/);
    const response = await kpass.api("GET", `${CLUSTERS}/staging/proxy/api`, undefined, { token });
    expect((await response.json()).message).toContain('pass "carol" has been revoked');
  });

  test("an expired pass gets 401 saying so", async () => {
    const shortLived = await createPass("dan", { user: "dan", clusters: { names: ["prod"] }, roles: ["view"], ttl: "1s" });
    expect((await kpass.api("GET", `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, undefined, { token: shortLived })).status).toBe(200);
    await Bun.sleep(1500);
    const response = await kpass.api("GET", `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, undefined, { token: shortLived });
    expect(response.status).toBe(401);
    expect((await response.json()).message).toContain("expired");
    // Expiry lives on the Pass, not in the token: extending the pass revives the same token.
    const later = new Date(Date.now() + 3_600_000).toISOString();
    expect((await kpass.api("PATCH", `${PASSES}/dan`, { spec: { expiresAt: later } }, { headers: { "content-type": "application/merge-patch+json" } })).status).toBe(200);
    expect((await kpass.api("GET", `${CLUSTERS}/prod/proxy/api/v1/namespaces/default/pods`, undefined, { token: shortLived })).status).toBe(200);
  });

  test("bad tokens are 401: garbage, wrong signature, alg none", async () => {
    const [header, payload] = kpass.adminToken.split(".");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    const hs = `${Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url")}.${payload}.c2lnbmF0dXJl`;
    for (const bad of ["garbage", `${header}.${payload}.AAAA`, none, hs]) {
      const response = await kpass.api("GET", `${CLUSTERS}/prod/proxy/api/v1/pods`, undefined, { token: bad });
      expect(response.status).toBe(401);
    }
  });
});

describe("rules are validated", () => {
  test("an unknown role or a malformed rule is 422 naming the field", async () => {
    const role = await kpass.api("POST", PASSES, passManifest("bad-role", { user: "x", roles: ["superuser"] }));
    expect(role.status).toBe(422);
    expect((await role.json()).message).toContain("spec.roles[0]");
    const rule = await kpass.api("POST", PASSES, passManifest("bad-rule", { user: "x", rules: [{ verbs: [], resources: ["pods"] }] }));
    expect(rule.status).toBe(422);
    expect((await rule.json()).message).toContain("spec.rules[0]");
  });

  test("eventually-consistent nothing: a new cluster matching carol-like selectors is reachable at once", async () => {
    const token = await createPass("selector", { user: "sel", clusters: { selector: { matchLabels: { env: "late" } } }, roles: ["view"] });
    const late = await kpass.api("GET", `${CLUSTERS}/late/proxy/api`, undefined, { token });
    expect(late.status).toBe(404);
    expect((await kpass.api("POST", CLUSTERS, clusterManifest("late", prod, { token: "prod-token" }, { labels: { env: "late" } }))).status).toBe(201);
    const now = await eventually(async () => {
      const r = await kpass.api("GET", `${CLUSTERS}/late/proxy/api/v1/namespaces/default/pods`, undefined, { token });
      return r.status === 200 ? r : undefined;
    });
    expect((await now.json()).items.length).toBeGreaterThan(0);
  });
});
