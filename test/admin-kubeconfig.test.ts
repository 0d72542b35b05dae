import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { keepCurrentContext, writeAdminKubeconfig } from "../src/server/admin-kubeconfig.ts";
import { writeFileAtomic } from "../src/store/atomic-file.ts";
import { buildKubeconfig } from "../src/auth/kubeconfig.ts";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { runKubectl } from "./harness/kubectl.ts";
import { clusterManifest, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";
import type { Cluster } from "../src/core/cluster.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
const PASSES = "/apis/cluster.kpass.dev/v1beta1/passes";
const ROOT = join(import.meta.dir, "..");

let alpha: TestCluster;
let beta: TestCluster;
const dataDir = mkdtempSync(join(tmpdir(), "kpass-test-admin-kubeconfig-"));
let kpass: KpassProcess | undefined;

beforeAll(async () => {
  [alpha, beta] = await Promise.all([
    startTestCluster({ credential: { type: "token", token: "alpha-token" } }),
    startTestCluster({ credential: { type: "token", token: "beta-token" } }),
  ]);
});

afterAll(async () => {
  await kpass?.stop();
  await Promise.all([alpha?.stop(), beta?.stop()]);
  removeDataDir(dataDir);
});

async function restart(): Promise<KpassProcess> {
  await kpass?.stop();
  kpass = await startKpass({ dataDir });
  return kpass;
}

/** kubectl with the admin kubeconfig and no --context: whatever the file's current-context says. */
const kubectl = (args: string[]) => runKubectl("1.33", ["--kubeconfig", join(dataDir, "admin.kubeconfig"), ...args]);

async function currentContext(): Promise<string> {
  const got = await kubectl(["config", "current-context"]);
  expect(got.exitCode).toBe(0);
  return got.stdout.trim();
}

async function clusterNames(): Promise<string[]> {
  const got = await kubectl(["get", "clusters", "-o", "name"]);
  expect(got.stderr).toBe("");
  expect(got.exitCode).toBe(0);
  return got.stdout.trim().split("\n").filter(Boolean).sort();
}

function expectWrittenSafely(): void {
  const path = join(dataDir, "admin.kubeconfig");
  expect(statSync(path).mode & 0o777).toBe(0o600);
  // No temp file of the atomic write is left behind.
  expect(readdirSync(dataDir).filter((f) => f.includes("admin.kubeconfig") && f !== "admin.kubeconfig")).toEqual([]);
}

describe("admin.kubeconfig across restarts", () => {
  test("with two Clusters stored, a restart leaves current-context kpass and kubectl get clusters works", async () => {
    const first = await restart();
    expect(await currentContext()).toBe("kpass");
    expect(await clusterNames()).toEqual([]);
    for (const [name, cluster, token] of [["alpha", alpha, "alpha-token"], ["beta", beta, "beta-token"]] as const) {
      expect((await first.api("POST", CLUSTERS, clusterManifest(name, cluster, { token }))).status).toBe(201);
    }
    const before = statSync(join(dataDir, "admin.kubeconfig")).ino;

    await restart();
    expect(await currentContext()).toBe("kpass");
    expect(await clusterNames()).toEqual(["cluster.cluster.kpass.dev/alpha", "cluster.cluster.kpass.dev/beta"]);
    const config = parse(readFileSync(join(dataDir, "admin.kubeconfig"), "utf8"));
    expect(config.contexts.map((c: { name: string }) => c.name)).toEqual(["alpha", "beta", "kpass"]);
    // Replaced by rename (a new file), not rewritten in place.
    expect(statSync(join(dataDir, "admin.kubeconfig")).ino).not.toBe(before);
    expectWrittenSafely();
  });

  test("a current-context chosen with kubectl config use-context is kept across a restart", async () => {
    const used = await kubectl(["config", "use-context", "beta"]);
    expect(used.exitCode).toBe(0);
    await restart();
    expect(await currentContext()).toBe("beta");
    // The kept context really reaches the member cluster, and kpass's own context still works.
    const pods = await kubectl(["get", "pods", "-n", "default", "-o", "name"]);
    expect(pods.exitCode).toBe(0);
    expect(pods.stdout).toContain("pod/");
    const clusters = await kubectl(["--context", "kpass", "get", "clusters", "-o", "name"]);
    expect(clusters.stdout.trim().split("\n").sort()).toEqual(["cluster.cluster.kpass.dev/alpha", "cluster.cluster.kpass.dev/beta"]);
    expectWrittenSafely();
  });

  test("once the chosen Cluster is deleted, a restart falls back to kpass", async () => {
    expect((await kpass!.api("DELETE", `${CLUSTERS}/beta`)).status).toBe(200);
    await restart();
    expect(await currentContext()).toBe("kpass");
    expect(await clusterNames()).toEqual(["cluster.cluster.kpass.dev/alpha"]);
    expectWrittenSafely();
  });

  test("an unreadable admin.kubeconfig (not YAML) is replaced by a usable one", async () => {
    await kpass!.stop();
    kpass = undefined;
    writeFileSync(join(dataDir, "admin.kubeconfig"), "apiVersion: v1\ncurrent-context: [alpha", { mode: 0o600 });
    await restart();
    expect(await currentContext()).toBe("kpass");
    expect(await clusterNames()).toEqual(["cluster.cluster.kpass.dev/alpha"]);
    expectWrittenSafely();
  });
});

describe("choosing the current-context of a pass kubeconfig", () => {
  const cli = async (args: string[]) => {
    const p = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), ...args, "--data", dataDir], { stdout: "pipe", stderr: "pipe", cwd: ROOT });
    const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { stdout, stderr, exitCode };
  };

  beforeAll(async () => {
    const running = kpass ?? (await restart());
    // State from the restart tests: alpha stored; make sure beta is back for two clusters.
    if ((await running.api("GET", `${CLUSTERS}/beta`)).status === 404) {
      expect((await running.api("POST", CLUSTERS, clusterManifest("beta", beta, { token: "beta-token" }))).status).toBe(201);
    }
    if ((await running.api("GET", `${CLUSTERS}/alpha`)).status === 404) {
      expect((await running.api("POST", CLUSTERS, clusterManifest("alpha", alpha, { token: "alpha-token" }))).status).toBe(201);
    }
  });

  test("CLI: kpass kubeconfig NAME defaults to kpass; --context NAME selects a context kubectl then uses", async () => {
    const plain = await cli(["kubeconfig", "admin"]);
    expect(plain.exitCode).toBe(0);
    expect(parse(plain.stdout)["current-context"]).toBe("kpass");
    const plainFile = join(dataDir, "plain.kubeconfig");
    writeFileSync(plainFile, plain.stdout, { mode: 0o600 });
    const clusters = await runKubectl("1.33", ["--kubeconfig", plainFile, "get", "clusters", "-o", "name"]);
    expect(clusters.stdout.trim().split("\n").sort()).toEqual(["cluster.cluster.kpass.dev/alpha", "cluster.cluster.kpass.dev/beta"]);

    const chosen = await cli(["kubeconfig", "admin", "--context", "alpha"]);
    expect(chosen.exitCode).toBe(0);
    const chosenFile = join(dataDir, "alpha.kubeconfig");
    writeFileSync(chosenFile, chosen.stdout, { mode: 0o600 });
    const current = await runKubectl("1.33", ["--kubeconfig", chosenFile, "config", "current-context"]);
    expect(current.stdout.trim()).toBe("alpha");
    const pods = await runKubectl("1.33", ["--kubeconfig", chosenFile, "get", "pods", "-n", "default", "-o", "name"]);
    expect(pods.exitCode).toBe(0);
    expect(pods.stdout).toContain("pod/");
  });

  test("CLI: --context naming no context of the kubeconfig fails with the server's 400 and prints nothing", async () => {
    const refused = await cli(["kubeconfig", "admin", "--context", "nope"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toContain("(400)");
    expect(refused.stderr).toContain(`context "nope"`);
  });

  test("HTTP: ?context= selects the current-context; an unknown one is a 400 Status", async () => {
    const running = kpass!;
    const plain = await running.api("GET", `${PASSES}/admin/kubeconfig`);
    expect(plain.status).toBe(200);
    expect(parse(await plain.text())["current-context"]).toBe("kpass");

    const chosen = await running.api("GET", `${PASSES}/admin/kubeconfig?context=beta`);
    expect(chosen.status).toBe(200);
    expect(chosen.headers.get("content-type")).toBe("application/yaml");
    expect(parse(await chosen.text())["current-context"]).toBe("beta");

    const refused = await running.api("GET", `${PASSES}/admin/kubeconfig?context=nope`);
    expect(refused.status).toBe(400);
    const status = await refused.json();
    expect(status).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "BadRequest", code: 400 });
    expect(status.message).toContain(`context "nope"`);

    const empty = await running.api("GET", `${PASSES}/admin/kubeconfig?context=`);
    expect(empty.status).toBe(400);
  });

  test("HTTP: a pass may only choose contexts of its own kubeconfig (clusters it reaches, or kpass)", async () => {
    const running = kpass!;
    const created = await running.api("POST", PASSES, { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name: "carol" }, spec: { user: "carol", roles: ["view"], clusters: { names: ["alpha"] } } });
    expect(created.status).toBe(201);
    const token = (await created.json()).status.token as string;
    const own = await running.api("GET", `${PASSES}/carol/kubeconfig?context=alpha`, undefined, { token });
    expect(own.status).toBe(200);
    const config = parse(await own.text());
    expect(config["current-context"]).toBe("alpha");
    expect(config.contexts.map((c: { name: string }) => c.name)).toEqual(["alpha", "kpass"]);
    const unreachable = await running.api("GET", `${PASSES}/carol/kubeconfig?context=beta`, undefined, { token });
    expect(unreachable.status).toBe(400);
    expect((await unreachable.json()).reason).toBe("BadRequest");
  });
});

describe("the write itself", () => {
  const cluster = (name: string) => ({ metadata: { name } }) as unknown as Cluster;
  const generated = (names: string[]) => buildKubeconfig({ serverUrl: "https://127.0.0.1:1", caPem: "ca", passName: "admin", token: "t", clusters: names.map(cluster) });

  test("keepCurrentContext keeps a context that still exists and otherwise picks kpass", () => {
    expect(parse(keepCurrentContext(generated(["a", "b"]), "b"))["current-context"]).toBe("b");
    expect(parse(keepCurrentContext(generated(["a", "b"]), "gone"))["current-context"]).toBe("kpass");
    expect(parse(keepCurrentContext(generated(["a", "b"]), undefined))["current-context"]).toBe("kpass");
    expect(parse(keepCurrentContext(generated([]), undefined))["current-context"]).toBe("kpass");
    // Everything but current-context is the generated file, unchanged.
    const { "current-context": _, ...rest } = parse(keepCurrentContext(generated(["a", "b"]), "a"));
    const { "current-context": __, ...expected } = parse(generated(["a", "b"]));
    expect(rest).toEqual(expected);
  });

  test("a reader holding the old file keeps reading the whole old file; the path then holds the whole new one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kpass-test-atomic-"));
    try {
      const path = join(dir, "admin.kubeconfig");
      const old = "old: " + "x".repeat(100_000) + "\n";
      writeFileSync(path, old, { mode: 0o644 });
      const reader = openSync(path, "r");
      try {
        const next = "new: " + "y".repeat(200_000) + "\n";
        await writeFileAtomic(path, next);
        const buffer = Buffer.alloc(old.length + 10);
        const read = readSync(reader, buffer, 0, buffer.length, 0);
        expect(buffer.subarray(0, read).toString()).toBe(old);
        expect(readFileSync(path, "utf8")).toBe(next);
        expect(statSync(path).mode & 0o777).toBe(0o600);
        expect(readdirSync(dir)).toEqual(["admin.kubeconfig"]);
      } finally {
        closeSync(reader);
      }
    } finally {
      removeDataDir(dir);
    }
  });

  test("writeAdminKubeconfig creates a missing file with current-context kpass", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kpass-test-atomic-"));
    try {
      const path = join(dir, "admin.kubeconfig");
      await writeAdminKubeconfig(path, generated(["a"]));
      expect(parse(readFileSync(path, "utf8"))["current-context"]).toBe("kpass");
      expect(statSync(path).mode & 0o777).toBe(0o600);
    } finally {
      removeDataDir(dir);
    }
  });
});
