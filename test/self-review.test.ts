/**
 * `kubectl auth whoami`, `auth can-i` and `auth can-i --list` through kpass, with kubectl 1.27
 * (JSON bodies) and 1.33 (protobuf bodies), against a test cluster whose own RBAC answers them.
 * Every `can-i` answer is checked against the outcome of the real request it asks about: through
 * kpass a request succeeds only when both the pass and the cluster allow it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { runKubectl, type KubectlResult, type KubectlVersion } from "./harness/kubectl.ts";
import { clusterManifest, createPass, removeDataDir, startKpass, writeKubeconfig, proxyUrl, type KpassProcess } from "./harness/kpass.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const VERSIONS: KubectlVersion[] = ["1.27", "1.33"];

let prod: TestCluster;
let kpass: KpassProcess;
let alice: string;
let admin: string;

beforeAll(async () => {
  // The cluster's own RBAC, for the identity kpass sends it (prod impersonates the pass's user).
  prod = await startTestCluster({
    credential: { type: "token", token: "prod-token" },
    rbac: {
      users: {
        alice: [
          { verbs: ["get", "list", "watch", "delete"], apiGroups: [""], resources: ["pods"], namespaces: ["team-a"] },
          { verbs: ["get"], apiGroups: [""], resources: ["pods/log"], namespaces: ["team-a"] },
          { verbs: ["get", "list"], apiGroups: [""], resources: ["configmaps"], namespaces: ["team-a"] },
        ],
        bob: [{ verbs: ["list"], apiGroups: [""], resources: ["configmaps"], namespaces: ["team-a"] }],
      },
    },
  });
  kpass = await startKpass({});
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("prod", prod, { token: "prod-token" }, { impersonation: "user" }))).status).toBe(201);
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("plain", prod, { token: "prod-token" }))).status).toBe(201);
  const token = await createPass(kpass, "alice", {
    user: "alice",
    groups: ["devs"],
    clusters: { names: ["prod", "plain"] },
    roles: ["view"],
    namespaces: ["team-a"],
    rules: [
      { verbs: ["create"], apiGroups: [""], resources: ["pods/exec"], namespaces: ["team-a"] },
      { verbs: ["impersonate"], apiGroups: [""], resources: ["users"], resourceNames: ["bob", "user1"] },
      { verbs: ["impersonate"], apiGroups: [""], resources: ["groups"] },
    ],
  });
  alice = writeKubeconfig(kpass, token, { prod: proxyUrl(kpass, "prod"), plain: proxyUrl(kpass, "plain"), kpass: kpass.url });
  admin = kpass.adminKubeconfig;
});

afterAll(async () => {
  await kpass?.stop();
  await prod?.stop();
  if (kpass) removeDataDir(kpass.dataDir);
});

function as(kubeconfig: string, version: KubectlVersion, context: string, args: string[]): Promise<KubectlResult> {
  return runKubectl(version, ["--kubeconfig", kubeconfig, "--context", context, ...args], { timeoutMs: 30_000 });
}

/** `can-i` prints yes (exit 0) or no (exit 1), the reason after " - " when there is one. */
function answer(result: KubectlResult): "yes" | "no" {
  const word = result.stdout.trim().split(/\s/)[0];
  if (word !== "yes" && word !== "no") throw new Error(`can-i answered neither yes nor no: ${result.stdout}${result.stderr}`);
  expect(result.exitCode).toBe(word === "yes" ? 0 : 1);
  return word;
}

interface Question {
  what: string;
  canI: string[];
  /** The real request the question is about. */
  real: string[];
  want: "yes" | "no";
  /** Who says no: the pass (kpass answers, naming the pass) or the cluster. */
  deniedBy?: "pass" | "cluster";
}

const QUESTIONS: Question[] = [
  { what: "both allow listing pods", canI: ["list", "pods", "-n", "team-a"], real: ["get", "pods", "-n", "team-a", "-o", "name"], want: "yes" },
  { what: "both allow reading a pod's log (a subresource)", canI: ["get", "pods", "--subresource=log", "-n", "team-a"], real: ["logs", "api-0", "-n", "team-a"], want: "yes" },
  { what: "the cluster allows delete, the pass does not", canI: ["delete", "pods", "-n", "team-a"], real: ["delete", "pod", "api-0", "-n", "team-a", "--dry-run=server"], want: "no", deniedBy: "pass" },
  { what: "the pass allows exec, the cluster does not", canI: ["create", "pods", "--subresource=exec", "-n", "team-a"], real: ["exec", "api-0", "-n", "team-a", "--", "true"], want: "no", deniedBy: "cluster" },
  { what: "neither allows creating configmaps", canI: ["create", "configmaps", "-n", "team-a"], real: ["create", "configmap", "x", "-n", "team-a", "--dry-run=server"], want: "no", deniedBy: "pass" },
  { what: "the pass allows nothing in team-b", canI: ["list", "pods", "-n", "team-b"], real: ["get", "pods", "-n", "team-b"], want: "no", deniedBy: "pass" },
  { what: "a non-resource URL the pass does not allow", canI: ["get", "/healthz"], real: ["get", "--raw", "/apis/cluster.kpass.dev/v1beta1/clusters/prod/proxy/healthz"], want: "no", deniedBy: "pass" },
  { what: "--as a user the pass may impersonate, allowed by both", canI: ["list", "configmaps", "-n", "team-a", "--as", "bob"], real: ["get", "configmaps", "-n", "team-a", "--as", "bob", "-o", "name"], want: "yes" },
  { what: "--as a user the cluster refuses that", canI: ["list", "pods", "-n", "team-a", "--as", "bob"], real: ["get", "pods", "-n", "team-a", "--as", "bob"], want: "no", deniedBy: "cluster" },
];

for (const version of VERSIONS) {
  describe(`kubectl ${version} auth can-i through an impersonating cluster`, () => {
    for (const q of QUESTIONS) {
      test(`${q.what}: ${q.want}, and the real request ${q.want === "yes" ? "works" : "is refused"}`, async () => {
        const asked = await as(alice, version, "prod", ["auth", "can-i", ...q.canI]);
        expect(answer(asked)).toBe(q.want);
        if (q.deniedBy === "pass") expect(asked.stdout).toContain('the pass "alice" does not allow');
        if (q.deniedBy === "cluster") expect(asked.stdout).not.toContain("the pass");
        const real = await as(alice, version, "prod", q.real);
        expect(real.exitCode === 0, `${q.real.join(" ")}: ${real.stderr}`).toBe(q.want === "yes");
        if (q.want === "no") expect(real.stderr).toMatch(/Forbidden|is forbidden/);
      });
    }

    test("--as someone the pass may not impersonate is refused, as the real request is", async () => {
      const asked = await as(alice, version, "prod", ["auth", "can-i", "list", "pods", "-n", "team-a", "--as", "carol"]);
      expect(asked.exitCode).not.toBe(0);
      expect(asked.stderr).toContain('users "carol" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope');
    });

    test("can-i --list lists only what both allow, and every line it lists works", async () => {
      const listed = await as(alice, version, "prod", ["auth", "can-i", "--list", "-n", "team-a"]);
      expect(listed.exitCode, listed.stderr).toBe(0);
      const rows = listed.stdout.trim().split("\n").slice(1).map((line) => line.trim().split(/\s{2,}/));
      const row = (resource: string) => rows.find((r) => r[0] === resource);
      // pods: the cluster grants get/list/watch/delete, the pass (view) get/list/watch.
      expect(row("pods")?.at(-1)).toBe("[get list watch]");
      expect(row("pods/log")?.at(-1)).toBe("[get]");
      expect(row("configmaps")?.at(-1)).toBe("[get list]");
      // Nothing the pass does not hold, however much the cluster grants (delete), and nothing the cluster does not (exec).
      expect(rows.some((r) => r.at(-1)?.includes("delete"))).toBe(false);
      expect(row("pods/exec")).toBeUndefined();
      expect(rows.some((r) => r[0] === "*.*")).toBe(false);
      // Every self review and discovery stay, as for anyone.
      expect(row("selfsubjectaccessreviews.authorization.k8s.io")?.at(-1)).toBe("[create]");
      const works = await as(alice, version, "prod", ["get", "configmaps", "-n", "team-a", "-o", "name"]);
      expect(works.stdout).toContain("configmap/settings");
    });

    test("a cluster that does not impersonate answers for kpass's identity, narrowed to the pass", async () => {
      // plain sees kpass's own credential (system:masters): the pass alone decides.
      expect(answer(await as(alice, version, "plain", ["auth", "can-i", "delete", "pods", "-n", "team-a"]))).toBe("no");
      expect(answer(await as(alice, version, "plain", ["auth", "can-i", "create", "pods", "--subresource=exec", "-n", "team-a"]))).toBe("yes");
      const listed = await as(alice, version, "plain", ["auth", "can-i", "--list", "-n", "team-a"]);
      expect(listed.exitCode, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(/\npods\/exec\s+\[\]\s+\[\]\s+\[create\]/);
      expect(listed.stdout).not.toContain("delete");
    });
  });

  describe(`kubectl ${version} auth whoami`, () => {
    test("through an impersonating cluster: the person, and the pass as an extra", async () => {
      const before = prod.requests.length;
      const who = await as(alice, version, "prod", ["auth", "whoami", "-o", "json"]);
      // kpass asks for JSON (kubectl 1.33 prefers protobuf, which kpass could not add the extra to).
      expect(prod.requests.slice(before).find((r) => r.path.endsWith("/selfsubjectreviews"))?.headers.accept).toBe("application/json");
      expect(who.exitCode, who.stderr).toBe(0);
      const info = JSON.parse(who.stdout).status.userInfo;
      expect(info.username).toBe("alice");
      expect(info.groups).toEqual(["devs", "system:authenticated"]);
      expect(info.extra).toEqual({ "kpass.dev/pass": ["alice"] });
    });

    test("through a cluster that does not impersonate: the identity stored for it", async () => {
      const who = await as(alice, version, "plain", ["auth", "whoami", "-o", "json"]);
      expect(JSON.parse(who.stdout).status.userInfo.username).toBe("test-cluster-token-user");
    });

    test("on kpass's own context: the pass", async () => {
      const who = await as(alice, version, "kpass", ["auth", "whoami", "-o", "json"]);
      expect(who.exitCode, who.stderr).toBe(0);
      const info = JSON.parse(who.stdout).status.userInfo;
      expect(info.username).toBe("alice");
      expect(info.groups).toEqual(["devs", "system:authenticated"]);
      expect(info.extra).toEqual({ "kpass.dev/pass": ["alice"] });
    });

    test("repeated --as-group values keep their boundaries, commas included", async () => {
      const before = prod.requests.length;
      const who = await as(alice, version, "prod", ["--as", "user1", "--as-group", "group2", "--as-group", "group1", "--as-group", ",,,chameleon", "auth", "whoami", "-o", "json"]);
      expect(who.exitCode, who.stderr).toBe(0);
      const info = JSON.parse(who.stdout).status.userInfo;
      expect(info.username).toBe("user1");
      expect(info.groups).toEqual(["group2", "group1", ",,,chameleon", "system:authenticated"]);
      const sent = prod.requests.slice(before).find((r) => r.path.endsWith("/selfsubjectreviews"))!;
      // Node keeps raw headers as a flat list: name, value, name, value, …
      const lines: string[] = [];
      for (let i = 0; i + 1 < sent.rawHeaders.length; i += 2) if (sent.rawHeaders[i]!.toLowerCase() === "impersonate-group") lines.push(sent.rawHeaders[i + 1]!);
      expect(lines).toEqual(["group2", "group1", ",,,chameleon"]);
    });
  });

  describe(`kubectl ${version} on kpass's own API`, () => {
    test("can-i answers for kpass itself: a non-admin may read, not write; the admin may write", async () => {
      expect(answer(await as(alice, version, "kpass", ["auth", "can-i", "list", "clusters"]))).toBe("yes");
      expect(answer(await as(alice, version, "kpass", ["auth", "can-i", "create", "clusters"]))).toBe("no");
      expect(answer(await as(admin, version, "kpass", ["auth", "can-i", "create", "clusters"]))).toBe("yes");
      expect(answer(await as(alice, version, "kpass", ["auth", "can-i", "get", "passes/alice"]))).toBe("yes");
      expect(answer(await as(alice, version, "kpass", ["auth", "can-i", "get", "passes/admin"]))).toBe("no");
    });

    test("a refused write reads like kube-apiserver's", async () => {
      const refused = await as(alice, version, "kpass", ["delete", "cluster", "prod"]);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toContain('clusters.cluster.kpass.dev "prod" is forbidden: User "alice" cannot delete resource "clusters" in API group "cluster.kpass.dev" at the cluster scope: pass "alice" is not an admin pass');
    });
  });
}

describe("refusals kpass originates, word for word", () => {
  test("a pass rule: kube-apiserver's sentence, then which pass on which cluster", async () => {
    const refused = await as(alice, "1.33", "prod", ["delete", "pod", "api-0", "-n", "team-a"]);
    expect(refused.stderr.trim()).toBe('Error from server (Forbidden): pods "api-0" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "team-a": the pass "alice" on cluster "prod" does not allow it');
  });

  test("the cluster's own refusal is relayed untouched", async () => {
    const refused = await as(alice, "1.33", "prod", ["get", "pods", "-n", "team-a", "--as", "bob"]);
    expect(refused.stderr.trim()).toBe('Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "team-a"');
  });
});
