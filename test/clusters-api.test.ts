import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { kubectlBinary, kubectlEnv, runKubectl, type KubectlVersion } from "./harness/kubectl.ts";
import { clusterManifest, eventually, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";
import { stringify } from "yaml";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
let fixture: TestCluster;
let kpass: KpassProcess;

beforeAll(async () => {
  fixture = await startTestCluster({ credential: { type: "token", token: "fixture-token" } });
  kpass = await startKpass();
});

afterAll(async () => {
  await kpass?.stop();
  await fixture?.stop();
  if (kpass) removeDataDir(kpass.dataDir);
});

function manifestFile(name: string, body: unknown): string {
  const path = join(kpass.dataDir, `${name}-${crypto.randomUUID().slice(0, 6)}.yaml`);
  writeFileSync(path, stringify(body));
  return path;
}

const kubectl = (version: KubectlVersion, args: string[], stdin?: string) => runKubectl(version, ["--kubeconfig", kpass.adminKubeconfig, "--context", "kpass", ...args], { stdin });

for (const version of ["1.27", "1.33"] as const) {
  describe(`Cluster objects with kubectl ${version}`, () => {
    const name = `prod-${version.replace(".", "-")}`;

    test("apply registers a cluster; get shows NAME ENDPOINT READY VERSION AGE from the probe", async () => {
      const applied = await kubectl(version, ["apply", "-f", manifestFile(name, clusterManifest(name, fixture, { token: "fixture-token" }, { labels: { env: "prod" } }))]);
      expect(applied.stderr).toBe("");
      expect(applied.stdout).toContain(`cluster.cluster.kpass.dev/${name} created`);
      const row = await eventually(async () => {
        const got = await kubectl(version, ["get", "clusters", name]);
        return got.stdout.includes("True") ? got.stdout : undefined;
      });
      const [header, line] = row.trim().split("\n");
      expect(header!.split(/\s+/)).toEqual(["NAME", "ENDPOINT", "READY", "VERSION", "AGE"]);
      expect(line!.split(/\s+/).slice(0, 4)).toEqual([name, fixture.url, "True", "v1.30.2"]);
    });

    test("get -o yaml returns the stored object with uid, resourceVersion, generation and status", async () => {
      const got = await kubectl(version, ["get", "cluster", name, "-o", "json"]);
      const object = JSON.parse(got.stdout);
      expect(object.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
      expect(Number(object.metadata.resourceVersion)).toBeGreaterThan(0);
      expect(object.metadata.generation).toBe(1);
      expect(object.status.conditions[0]).toMatchObject({ type: "Ready", status: "True", reason: "ProbeSucceeded" });
      expect(object.spec.access.credential.serviceAccountToken).toBe("fixture-token");
    });

    test("describe, label with selector, and delete", async () => {
      const described = await kubectl(version, ["describe", "cluster", name]);
      expect(described.exitCode).toBe(0);
      expect(described.stdout).toContain(`Name:`);
      expect(described.stdout).toContain(fixture.url);
      const labelled = await kubectl(version, ["label", "cluster", name, `tier=gold-${version.replace(".", "")}`]);
      expect(labelled.stdout).toContain("labeled");
      const selected = await kubectl(version, ["get", "clusters", "-l", `tier=gold-${version.replace(".", "")}`, "-o", "name"]);
      expect(selected.stdout.trim()).toBe(`cluster.cluster.kpass.dev/${name}`);
      const none = await kubectl(version, ["get", "clusters", "-l", "tier in (silver)", "-o", "name"]);
      expect(none.stdout.trim()).toBe("");
    });

    test("edit changes the spec and bumps the generation", async () => {
      const editor = join(kpass.dataDir, "editor.sh");
      writeFileSync(editor, `#!/bin/sh\nsed -i 's/impersonation: none/impersonation: user/; s/^spec:$/spec:\\n  impersonation: user/' "$1"\n`, { mode: 0o755 });
      const edited = await runKubectl(version, ["--kubeconfig", kpass.adminKubeconfig, "--context", "kpass", "edit", "cluster", name], { env: { KUBE_EDITOR: editor, EDITOR: editor } });
      expect(edited.stdout + edited.stderr).toContain("edited");
      const object = JSON.parse((await kubectl(version, ["get", "cluster", name, "-o", "json"])).stdout);
      expect(object.spec.impersonation).toBe("user");
      expect(object.metadata.generation).toBe(2);
    });

    test("an unknown field is refused by kubectl's default strict validation", async () => {
      const manifest = clusterManifest(`${name}-bad`, fixture, { token: "x" }) as { spec: Record<string, unknown> };
      manifest.spec.colour = "blue";
      const applied = await kubectl(version, ["apply", "-f", manifestFile("bad", manifest)]);
      expect(applied.exitCode).not.toBe(0);
      expect(applied.stderr).toContain('unknown field "spec.colour"');
    });

    test("validation errors are 422 naming the field", async () => {
      const manifest = clusterManifest(`${name}-http`, fixture, { token: "x" }) as { spec: { access: { endpoint: string } } };
      manifest.spec.access.endpoint = "http://127.0.0.1:1";
      const applied = await kubectl(version, ["apply", "-f", manifestFile("http", manifest)]);
      expect(applied.exitCode).not.toBe(0);
      expect(applied.stderr).toContain("spec.access.endpoint");
      expect(applied.stderr).toContain("https://");
    });

    test("get -w prints changes as they happen", async () => {
      const watcher = Bun.spawn([kubectlBinary(version), "--kubeconfig", kpass.adminKubeconfig, "--context", "kpass", "get", "clusters", "-w", "-o", "name"], { stdout: "pipe", stderr: "pipe", env: kubectlEnv() });
      const reader = watcher.stdout.getReader();
      let seen = "";
      const created = `${name}-watched`;
      await Bun.sleep(300);
      const response = await kpass.api("POST", CLUSTERS, clusterManifest(created, fixture, { token: "fixture-token" }));
      expect(response.status).toBe(201);
      const deadline = Date.now() + 10_000;
      while (!seen.includes(created) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      watcher.kill();
      expect(seen).toContain(`cluster.cluster.kpass.dev/${created}`);
      const deleted = await kubectl(version, ["delete", "cluster", created]);
      expect(deleted.stdout).toContain("deleted");
    });
  });
}

describe("Cluster API semantics", () => {
  const base = () => clusterManifest("semantics", fixture, { token: "fixture-token" });

  test("create of an existing name is 409 AlreadyExists", async () => {
    expect((await kpass.api("POST", CLUSTERS, base())).status).toBe(201);
    // Let the first health probe write its status, so later updates race nothing.
    await eventually(async () => ((await (await kpass.api("GET", `${CLUSTERS}/semantics`)).json()).status?.lastProbeTime ? true : undefined));
    const again = await kpass.api("POST", CLUSTERS, base());
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ kind: "Status", reason: "AlreadyExists", code: 409 });
  });

  test("update with a stale resourceVersion is 409 Conflict", async () => {
    const current = await (await kpass.api("GET", `${CLUSTERS}/semantics`)).json();
    const updated = await kpass.api("PUT", `${CLUSTERS}/semantics`, { ...current, metadata: { ...current.metadata, labels: { a: "1" } } });
    expect(updated.status).toBe(200);
    const stale = await kpass.api("PUT", `${CLUSTERS}/semantics`, { ...current, metadata: { ...current.metadata, labels: { a: "2" } } });
    expect(stale.status).toBe(409);
    expect((await stale.json()).reason).toBe("Conflict");
  });

  test("JSON merge patch and JSON patch", async () => {
    const merged = await kpass.api("PATCH", `${CLUSTERS}/semantics`, { metadata: { labels: { team: "blue" } } }, { headers: { "content-type": "application/merge-patch+json" } });
    expect(merged.status).toBe(200);
    expect((await merged.json()).metadata.labels.team).toBe("blue");
    const patched = await kpass.api("PATCH", `${CLUSTERS}/semantics`, [{ op: "replace", path: "/metadata/labels/team", value: "red" }], { headers: { "content-type": "application/json-patch+json" } });
    expect(patched.status).toBe(200);
    expect((await patched.json()).metadata.labels.team).toBe("red");
    const broken = await kpass.api("PATCH", `${CLUSTERS}/semantics`, [{ op: "replace", path: "/metadata/nothing/here", value: 1 }], { headers: { "content-type": "application/json-patch+json" } });
    expect(broken.status).toBe(422);
  });

  test("server-side apply answers a clear 415", async () => {
    const applied = await kpass.api("PATCH", `${CLUSTERS}/semantics?fieldManager=me`, "apiVersion: cluster.kpass.dev/v1beta1\nkind: Cluster\n", { headers: { "content-type": "application/apply-patch+yaml" } });
    expect(applied.status).toBe(415);
    expect((await applied.json()).message).toContain("server-side apply is not supported");
    const ssa = await runKubectl("1.33", ["--kubeconfig", kpass.adminKubeconfig, "--context", "kpass", "apply", "--server-side", "-f", "-"], { stdin: stringify(base()) });
    expect(ssa.exitCode).not.toBe(0);
    expect(ssa.stderr).toContain("server-side apply is not supported");
  });

  test("watch from a resourceVersion replays later changes, in order", async () => {
    const list = await (await kpass.api("GET", CLUSTERS)).json();
    const from = list.metadata.resourceVersion;
    await kpass.api("PATCH", `${CLUSTERS}/semantics`, { metadata: { labels: { step: "1" } } }, { headers: { "content-type": "application/merge-patch+json" } });
    await kpass.api("DELETE", `${CLUSTERS}/semantics`);
    const response = await kpass.api("GET", `${CLUSTERS}?watch=1&resourceVersion=${from}&timeoutSeconds=1`);
    const events = (await response.text()).trim().split("\n").map((line) => JSON.parse(line)).filter((e) => e.object.metadata.name === "semantics");
    expect(events.map((e) => e.type)).toEqual(["MODIFIED", "DELETED"]);
    expect(events[0].object.metadata.labels.step).toBe("1");
    expect(Number(events[1].object.metadata.resourceVersion)).toBeGreaterThan(Number(events[0].object.metadata.resourceVersion));
  });

  test("a watch without a resourceVersion starts with every current object as ADDED", async () => {
    const count = (await (await kpass.api("GET", CLUSTERS)).json()).items.length;
    const response = await kpass.api("GET", `${CLUSTERS}?watch=1&resourceVersion=0&timeoutSeconds=1`);
    expect(response.status).toBe(200);
    const events = (await response.text()).trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    expect(count).toBeGreaterThan(0);
    expect(events.slice(0, count).every((e) => e.type === "ADDED")).toBe(true);
  });

  test("objects are stored as sealed 0600 files and survive a restart", async () => {
    expect((await kpass.api("POST", CLUSTERS, clusterManifest("durable", fixture, { token: "fixture-token-in-the-clear" }))).status).toBe(201);
    const file = join(kpass.dataDir, "objects", "clusters", "durable.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // Sealed under the data directory's key: neither the credential nor the name is readable.
    const stored = readFileSync(file, "latin1");
    expect(stored.startsWith("kpass:enc:aesgcm:v1:")).toBe(true);
    expect(stored).not.toContain("fixture-token-in-the-clear");
    expect(stored).not.toContain("durable");
    const before = await (await kpass.api("GET", `${CLUSTERS}/durable`)).json();
    // The newest change before the restart is a deletion: its revision must not be reused.
    expect((await kpass.api("POST", CLUSTERS, clusterManifest("short-lived", fixture, { token: "t" }))).status).toBe(201);
    const deleted = await (await kpass.api("DELETE", `${CLUSTERS}/short-lived`)).json();
    await kpass.stop();
    kpass = await startKpass({ dataDir: kpass.dataDir });
    const after = await (await kpass.api("GET", `${CLUSTERS}/durable`)).json();
    expect(after.metadata.uid).toBe(before.metadata.uid);
    expect(after.spec).toEqual(before.spec);
    const created = await (await kpass.api("POST", CLUSTERS, clusterManifest("after-restart", fixture, { token: "t" }))).json();
    expect(Number(created.metadata.resourceVersion)).toBeGreaterThan(Number(deleted.metadata.resourceVersion));
    // History does not survive a restart: a watch from before it must relist (410 Gone).
    const gone = await (await kpass.api("GET", `${CLUSTERS}?watch=1&resourceVersion=1&timeoutSeconds=1`)).text();
    expect(JSON.parse(gone.trim().split("\n")[0]!)).toMatchObject({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Gone" } });
  });

  test("kpass cluster add imports a context from an existing kubeconfig", async () => {
    const kubeconfig = join(kpass.dataDir, "existing.kubeconfig");
    writeFileSync(
      kubeconfig,
      stringify({
        apiVersion: "v1",
        kind: "Config",
        "current-context": "other",
        clusters: [{ name: "real", cluster: { server: fixture.url, "certificate-authority-data": Buffer.from(fixture.caPem).toString("base64") } }],
        users: [{ name: "sa", user: { token: "fixture-token" } }],
        contexts: [{ name: "other", context: { cluster: "real", user: "sa" } }, { name: "imported", context: { cluster: "real", user: "sa" } }],
      }),
    );
    const cli = Bun.spawn([process.execPath, "src/cli/main.ts", "cluster", "add", "imported", "--kubeconfig", kubeconfig, "--context", "imported", "--data", kpass.dataDir], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(cli.stdout).text(), new Response(cli.stderr).text(), cli.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toContain("imported created");
    const cluster = await eventually(async () => {
      const c = await (await kpass.api("GET", `${CLUSTERS}/imported`)).json();
      return c.status?.conditions?.[0]?.status === "True" ? c : undefined;
    });
    expect(cluster.spec.access).toMatchObject({ endpoint: fixture.url, credential: { type: "ServiceAccountToken", serviceAccountToken: "fixture-token" } });
  });
});
