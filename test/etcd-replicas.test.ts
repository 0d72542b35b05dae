/**
 * kpass replicas sharing one etcd (`--store etcd`), driven the way users drive them: real kubectl
 * binaries and HTTP against running kpass processes, a real etcd, a fixture cluster (issue #14).
 *
 * One etcd for the file (a second one for the outage group, which kills its etcd), a fresh prefix
 * per group; every process started here is stopped by pid in afterAll. Deadlines are "within N s"
 * with polling; the 1 s ones (revocation, watch fan-out) are the product's promises.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parse, stringify } from "yaml";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { etcdAvailable, startEtcd, type EtcdProcess } from "./harness/etcd.ts";
import { clusterManifest, eventually, proxyUrl, removeDataDir, startKpass, writeKubeconfig, type KpassProcess } from "./harness/kpass.ts";
import { runKubectl, startKubectl } from "./harness/kubectl.ts";
import { asAdminOf, etcdArgs, randomPrefix, startReplicas, writeKeyFile, type ReplicaSet } from "./harness/replicas.ts";

const ROOT = join(import.meta.dir, "..");
const API = "/apis/cluster.kpass.dev/v1beta1";
const CLUSTERS = `${API}/clusters`;
const PASSES = `${API}/passes`;
/** The credential kpass holds for the fixture cluster: distinctive, so that test 9 can look for it. */
const CLUSTER_TOKEN = `fixture-credential-${randomBytes(8).toString("hex")}`;
/** The product's promise for revocation and watch fan-out across replicas. */
const FAN_OUT_MS = 1000;

const available = etcdAvailable();
let etcd: EtcdProcess;
let fixture: TestCluster;
const groups: ReplicaSet[] = [];
const singles: KpassProcess[] = [];

beforeAll(async () => {
  if (!available) return;
  [etcd, fixture] = await Promise.all([startEtcd(), startTestCluster({ credential: { type: "token", token: CLUSTER_TOKEN } })]);
});

afterAll(async () => {
  await Promise.all(groups.map((g) => g.stop()));
  await Promise.all(
    singles.map(async (k) => {
      if (alive(k.pid)) await k.stop();
      removeDataDir(k.dataDir);
    }),
  );
  await etcd?.stop();
  await fixture?.stop();
});

// -------------------------------------------------------------------------------------------------
// helpers

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const passManifest = (name: string, spec: Record<string, unknown> = viewSpec()) => ({ apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec });
function viewSpec(user = "viewer", clusters = ["c1"]) {
  return { user, clusters: { names: clusters }, roles: ["view"] };
}

/** Creates a Pass through `k` (admin), returning its token (shown once) and the stored object. */
async function createPass(api: KpassProcess["api"], name: string, spec?: Record<string, unknown>): Promise<{ token: string; object: any }> {
  const response = await api("POST", PASSES, passManifest(name, spec));
  const object = await response.json();
  if (response.status !== 201) throw new Error(`creating pass ${name}: ${response.status} ${JSON.stringify(object)}`);
  return { token: object.status.token as string, object };
}

function etcdctl(endpoint: string, args: string[]): { stdout: string; exitCode: number } {
  const result = Bun.spawnSync(["/usr/bin/etcdctl", "--endpoints", endpoint, ...args], { env: { ...process.env, ETCDCTL_API: "3" }, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${result.stderr.toString()}`);
  return { stdout: result.stdout.toString("latin1"), exitCode: result.exitCode };
}

/** Every key and value under `prefix`, values as raw bytes (latin1, so binary survives). */
function etcdValues(endpoint: string, prefix: string): { key: string; value: Buffer }[] {
  const { stdout } = etcdctl(endpoint, ["get", "--prefix", prefix, "-w", "json"]);
  const reply = JSON.parse(stdout) as { kvs?: { key: string; value?: string }[] };
  return (reply.kvs ?? []).map((kv) => ({ key: Buffer.from(kv.key, "base64").toString("utf8"), value: Buffer.from(kv.value ?? "", "base64") }));
}

/** Runs the kpass CLI (bun src/cli/main.ts …). */
async function kpassCli(args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), ...args], { stdout: "pipe", stderr: "pipe", cwd: ROOT });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { stdout, stderr, exitCode };
}

interface WatchEventLine {
  type: string;
  object: any;
  at: number;
}

/** A raw streaming GET (a watch): its events as they arrive, and when the stream ended. */
function openStream(url: string, token: string, caPem: string) {
  const controller = new AbortController();
  const events: WatchEventLine[] = [];
  let endedAt: number | undefined;
  let status = 0;
  const response = fetch(url, { headers: { authorization: `Bearer ${token}` }, tls: { ca: caPem }, signal: controller.signal } as RequestInit);
  const finished = (async () => {
    try {
      const res = await response;
      status = res.status;
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) events.push({ ...(JSON.parse(line) as { type: string; object: unknown }), at: performance.now() });
        }
      }
    } catch {
      // Aborted by the test, or the connection dropped: either way the stream is over.
    }
    endedAt = performance.now();
  })();
  return {
    events,
    status: () => status,
    headers: response,
    endedAt: () => endedAt,
    finished,
    async close() {
      controller.abort();
      await finished;
    },
  };
}

/** Polls `check` every 20 ms for at most `ms`, returning how long it took (throws past the deadline). */
async function within(ms: number, what: string, check: () => Promise<boolean> | boolean): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(20);
  }
}

/** Files under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : entry.isFile() ? [path] : [];
  });
}

/** What test 9 forbids in stored bytes, with the reason shown when one is found. */
function cleartextFindings(text: string, tokens: string[]): string[] {
  const needles = [...tokens, CLUSTER_TOKEN, "PRIVATE KEY", '"d":'];
  return needles.filter((n) => text.includes(n)).map((n) => (n.length > 24 ? `${n.slice(0, 24)}…` : n));
}

function manifestFile(dir: string, body: unknown): string {
  const path = join(dir, `manifest-${randomBytes(3).toString("hex")}.yaml`);
  writeFileSync(path, stringify(body));
  return path;
}

// -------------------------------------------------------------------------------------------------

// The tests of this group build on one another (c1 and alice from test 1): run the group whole.
describe.skipIf(!available)("three replicas on one etcd", () => {
  let set: ReplicaSet;
  let a: KpassProcess;
  let b: KpassProcess;
  let c: KpassProcess;
  /** Admin API of B and C with A's admin token (one signing key). */
  let onB: KpassProcess["api"];
  let onC: KpassProcess["api"];
  const tokens: string[] = [];

  beforeAll(async () => {
    set = await startReplicas(etcd.endpoint, 3);
    groups.push(set);
    [a, b, c] = set.replicas as [KpassProcess, KpassProcess, KpassProcess];
    onB = asAdminOf(a, b);
    onC = asAdminOf(a, c);
  });

  test("1. a Cluster and a Pass created through A with kubectl 1.33 are seen through B and C; A's pass token works through B's proxy (kubectl 1.27)", async () => {
    expect(b.caPem).toBe(a.caPem);
    expect(c.caPem).toBe(a.caPem);
    const applied = await runKubectl("1.33", ["--kubeconfig", a.adminKubeconfig, "--context", "kpass", "apply", "-f", manifestFile(a.dataDir, clusterManifest("c1", fixture, { token: CLUSTER_TOKEN }))]);
    expect(applied.stderr).toBe("");
    expect(applied.stdout).toContain("cluster.cluster.kpass.dev/c1 created");
    const createdPass = await runKubectl("1.33", ["--kubeconfig", a.adminKubeconfig, "--context", "kpass", "create", "-f", manifestFile(a.dataDir, passManifest("alice", viewSpec("alice"))), "-o", "json"]);
    expect(createdPass.stderr).toBe("");
    tokens.push(JSON.parse(createdPass.stdout).status.token);

    for (const replica of [b, c]) {
      const kubeconfig = writeKubeconfig(replica, a.adminToken, { kpass: replica.url });
      const clusters = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "get", "clusters", "c1", "-o", "json"]);
      expect(clusters.stderr).toBe("");
      expect(JSON.parse(clusters.stdout).spec.access.endpoint).toBe(fixture.url);
      const passes = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "get", "passes", "-o", "name"]);
      expect(passes.stdout.trim().split("\n")).toContain("pass.cluster.kpass.dev/alice");
    }

    // The pass's kubeconfig as A hands it out, pointed at B.
    const response = await a.api("GET", `${PASSES}/alice/kubeconfig`);
    expect(response.status).toBe(200);
    const text = (await response.text()).replaceAll(a.url, b.url);
    expect(text).toContain(b.url);
    const kubeconfig = join(a.dataDir, "alice-on-b.kubeconfig");
    writeFileSync(kubeconfig, text);
    const pods = await runKubectl("1.27", ["--kubeconfig", kubeconfig, "--context", "c1", "get", "pods", "-n", "default", "-o", "name"]);
    expect(pods.stderr).toBe("");
    expect(pods.stdout).toContain("pod/");
    expect(fixture.requests.some((r) => r.path === "/api/v1/namespaces/default/pods")).toBe(true);
  });

  test("2. deleting a Pass on A: its token is 401 on B within 1 s, and its watch through B's proxy ends within 1 s", async () => {
    const { token } = await createPass(a.api, "revokee", viewSpec("revokee"));
    tokens.push(token);
    const viaB = () => fetch(`${proxyUrl(b, "c1")}/api/v1/namespaces/default/configmaps`, { headers: { authorization: `Bearer ${token}` }, tls: { ca: b.caPem } } as RequestInit);
    await within(5000, "the new pass works on B", async () => (await viaB()).status === 200);
    const before = fixture.activeStreams();
    const watch = openStream(`${proxyUrl(b, "c1")}/api/v1/namespaces/default/configmaps?watch=true`, token, b.caPem);
    try {
      await watch.headers;
      expect((await watch.headers).status).toBe(200);
      await within(5000, "the watch is open at the cluster", () => fixture.activeStreams() > before);
      const deleted = await a.api("DELETE", `${PASSES}/revokee`);
      expect(deleted.status).toBe(200);
      await Promise.all([
        within(FAN_OUT_MS, "token refused on B", async () => (await viaB()).status === 401),
        within(FAN_OUT_MS, "watch through B ended", () => watch.endedAt() !== undefined),
      ]);
    } finally {
      await watch.close();
    }
  });

  test("2b. a client certificate A issued (kpass kubeconfig --cert) works through C with kubectl 1.33; deleting the Pass on A refuses it on C within 1 s", async () => {
    await createPass(a.api, "certified", viewSpec("certified"));
    const issued = await kpassCli(["kubeconfig", "certified", "--cert", "--data", a.dataDir]);
    expect(issued.exitCode).toBe(0);
    expect(issued.stdout).toContain("client-certificate-data");
    const kubeconfig = join(a.dataDir, "certified-on-c.kubeconfig");
    writeFileSync(kubeconfig, issued.stdout.replaceAll(a.url, c.url));
    const pods = await runKubectl("1.33", ["--kubeconfig", kubeconfig, "--context", "c1", "get", "pods", "-n", "default", "-o", "name"]);
    expect(pods.stderr).toBe("");
    expect(pods.stdout).toContain("pod/");
    const user = parse(issued.stdout).users[0].user as Record<string, string>;
    const tls = { ca: c.caPem, cert: Buffer.from(user["client-certificate-data"]!, "base64").toString(), key: Buffer.from(user["client-key-data"]!, "base64").toString() };
    const viaC = () => fetch(`${proxyUrl(c, "c1")}/api/v1/namespaces/default/configmaps`, { tls } as RequestInit);
    expect((await viaC()).status).toBe(200);
    expect((await a.api("DELETE", `${PASSES}/certified`)).status).toBe(200);
    await within(FAN_OUT_MS, "the certificate refused on C", async () => (await viaC()).status === 401);
  });

  test("3. a watch on B sees a create, an update and a delete made through A, each within 1 s, in order, resourceVersions increasing", async () => {
    const list = await (await onB("GET", CLUSTERS)).json();
    const watch = openStream(`${b.url}${CLUSTERS}?watch=true&resourceVersion=${list.metadata.resourceVersion}`, a.adminToken, b.caPem);
    try {
      await watch.headers;
      const name = "watched";
      const mine = () => watch.events.filter((e) => e.object?.metadata?.name === name);
      const seen = (predicate: (e: WatchEventLine) => boolean) => within(FAN_OUT_MS, "event on B", () => mine().some(predicate));

      const created = await a.api("POST", CLUSTERS, clusterManifest(name, fixture, { token: CLUSTER_TOKEN }));
      expect(created.status).toBe(201);
      const createdRv = (await created.json()).metadata.resourceVersion;
      await seen((e) => e.type === "ADDED");

      const patched = await a.api("PATCH", `${CLUSTERS}/${name}`, { metadata: { labels: { step: "updated" } } }, { headers: { "content-type": "application/merge-patch+json" } });
      expect(patched.status).toBe(200);
      await seen((e) => e.type === "MODIFIED" && e.object.metadata.labels?.step === "updated");

      const deleted = await a.api("DELETE", `${CLUSTERS}/${name}`);
      expect(deleted.status).toBe(200);
      await seen((e) => e.type === "DELETED");

      const events = mine();
      expect(events[0]!.type).toBe("ADDED");
      expect(events[0]!.object.metadata.resourceVersion).toBe(createdRv);
      expect(events.at(-1)!.type).toBe("DELETED");
      // Status writes of the prober may come between: only MODIFIED in the middle.
      expect(events.slice(1, -1).every((e) => e.type === "MODIFIED")).toBe(true);
      const rvs = watch.events.filter((e) => e.type !== "BOOKMARK").map((e) => Number(e.object.metadata.resourceVersion));
      for (let i = 1; i < rvs.length; i++) expect(rvs[i]!).toBeGreaterThan(rvs[i - 1]!);
    } finally {
      await watch.close();
    }
  });

  test("3b. kubectl 1.33 get clusters -w on B prints a Cluster created through A; a watch on C resumes from the resourceVersion A returned", async () => {
    const kubeconfig = writeKubeconfig(b, a.adminToken, { kpass: b.url });
    const watcher = startKubectl("1.33", ["get", "clusters", "-w", "-o", "name"], { kubeconfig });
    try {
      await watcher.waitForLine((l) => l === "cluster.cluster.kpass.dev/c1", 15_000);
      const created = await a.api("POST", CLUSTERS, clusterManifest("kubectl-watched", fixture, { token: CLUSTER_TOKEN }));
      expect(created.status).toBe(201);
      const createdRv = (await created.json()).metadata.resourceVersion as string;
      await within(FAN_OUT_MS, "kubectl -w on B printed it", () => watcher.lines.some((l) => l.text === "cluster.cluster.kpass.dev/kubectl-watched"));

      // A watch on C from A's resourceVersion: what came after it, not the creation itself.
      const labelled = await a.api("PATCH", `${CLUSTERS}/kubectl-watched`, { metadata: { labels: { after: "create" } } }, { headers: { "content-type": "application/merge-patch+json" } });
      expect(labelled.status).toBe(200);
      const watch = openStream(`${c.url}${CLUSTERS}?watch=true&resourceVersion=${createdRv}`, a.adminToken, c.caPem);
      try {
        await within(5000, "the label change on C", () => watch.events.some((e) => e.object?.metadata?.labels?.after === "create"));
        const mine = watch.events.filter((e) => e.object?.metadata?.name === "kubectl-watched");
        expect(mine.every((e) => e.type === "MODIFIED")).toBe(true);
        expect(mine.every((e) => Number(e.object.metadata.resourceVersion) > Number(createdRv))).toBe(true);
      } finally {
        await watch.close();
      }
      expect((await a.api("DELETE", `${CLUSTERS}/kubectl-watched`)).status).toBe(200);
    } finally {
      await watcher.stop();
    }
  });

  test("4. two replicas replacing one object from the same resourceVersion: one 200, one 409 Conflict", async () => {
    await createPass(a.api, "contested", viewSpec("contested"));
    const fromA = await (await a.api("GET", `${PASSES}/contested`)).json();
    const fromB = await eventually(async () => {
      const response = await onB("GET", `${PASSES}/contested`);
      return response.status === 200 ? response.json() : undefined;
    }, 5000);
    expect(fromB.metadata.resourceVersion).toBe(fromA.metadata.resourceVersion);
    const put = (api: KpassProcess["api"], object: any, who: string) => api("PUT", `${PASSES}/contested`, { ...object, metadata: { ...object.metadata, labels: { writer: who } } });
    const [ra, rb] = await Promise.all([put(a.api, fromA, "a"), put(onB, fromB, "b")]);
    const statuses = [ra.status, rb.status].sort();
    expect(statuses).toEqual([200, 409]);
    const loser = ra.status === 409 ? ra : rb;
    const status = await loser.json();
    expect(status).toMatchObject({ kind: "Status", code: 409, reason: "Conflict" });
    const winner = ra.status === 200 ? "a" : "b";
    await eventually(async () => ((await (await onC("GET", `${PASSES}/contested`)).json()).metadata.labels?.writer === winner ? true : undefined), 5000);
  });

  test("4b. one name created through A and B at once: one 201, one 409 AlreadyExists; deleted through both at once: one 200, one 404", async () => {
    const [ca, cb] = await Promise.all([a.api("POST", PASSES, passManifest("twice", viewSpec("a"))), onB("POST", PASSES, passManifest("twice", viewSpec("b")))]);
    expect([ca.status, cb.status].sort()).toEqual([201, 409]);
    expect(await (ca.status === 409 ? ca : cb).json()).toMatchObject({ kind: "Status", code: 409, reason: "AlreadyExists" });
    const winner = ca.status === 201 ? "a" : "b";
    await eventually(async () => ((await (await onC("GET", `${PASSES}/twice`)).json()).spec?.user === winner ? true : undefined), 5000);
    await eventually(async () => ((await a.api("GET", `${PASSES}/twice`)).status === 200 && (await onB("GET", `${PASSES}/twice`)).status === 200 ? true : undefined), 5000);
    const [da, db] = await Promise.all([a.api("DELETE", `${PASSES}/twice`), onB("DELETE", `${PASSES}/twice`)]);
    expect([da.status, db.status].sort()).toEqual([200, 404]);
    expect(await (da.status === 404 ? da : db).json()).toMatchObject({ kind: "Status", code: 404, reason: "NotFound" });
  });

  test("5. a paged LIST started on A continues on B and C: every item once", async () => {
    for (let i = 0; i < 5; i++) await createPass(a.api, `paged-${i}`, viewSpec(`paged-${i}`));
    const full = await (await a.api("GET", PASSES)).json();
    const expected = (full.items as any[]).map((p) => p.metadata.name).sort();
    expect(expected.length).toBeGreaterThanOrEqual(7);
    await eventually(async () => ((await (await onC("GET", PASSES)).json()).items.length === expected.length ? true : undefined), 5000);
    const apis = [a.api, onB, onC];
    const names: string[] = [];
    let page = await (await a.api("GET", `${PASSES}?limit=1`)).json();
    for (let i = 1; i <= expected.length + 2; i++) {
      expect(page.kind).toBe("PassList");
      names.push(...(page.items as any[]).map((p) => p.metadata.name));
      if (!page.metadata.continue) break;
      const response = await apis[i % apis.length]!("GET", `${PASSES}?limit=1&continue=${encodeURIComponent(page.metadata.continue)}`);
      expect(response.status).toBe(200);
      page = await response.json();
    }
    expect(page.metadata.continue ?? "").toBe("");
    expect(names.sort()).toEqual(expected);
  });

  test("9a. nothing readable in clear in etcd: no pass token, no cluster credential, no private key, no JWK \"d\"", async () => {
    expect(tokens.length).toBeGreaterThanOrEqual(2);
    const plain = etcdctl(etcd.endpoint, ["get", "--prefix", set.prefix]).stdout;
    expect(plain).toContain(`${set.prefix}registry/clusters/c1`);
    expect(plain).toContain(`${set.prefix}secrets/token-signing.jwk`);
    expect(cleartextFindings(plain, tokens)).toEqual([]);
    for (const { key, value } of etcdValues(etcd.endpoint, set.prefix)) {
      if (key.startsWith(`${set.prefix}registry/clusters/`) || key.startsWith(`${set.prefix}registry/passes/`) || key.startsWith(`${set.prefix}secrets/`)) {
        expect(`${key}: ${value.subarray(0, 20).toString("latin1")}`).toBe(`${key}: kpass:enc:aesgcm:v1:`);
      }
    }
  });

  test("10b. rotate-key --new-key while the replicas run: they keep serving everything; after SIGHUP A seals new writes under the new key", async () => {
    const before = ((await (await onC("GET", PASSES)).json()).items as any[]).map((p) => p.metadata.name).sort();
    const scratch = join(a.dataDir, "rotate-scratch");
    const rotated = await kpassCli(["store", "rotate-key", "--new-key", ...etcdArgs(etcd.endpoint, set.prefix, set.keyFile), "--data", scratch]);
    expect(rotated.stderr).toBe("");
    expect(rotated.exitCode).toBe(0);
    const newId = /sealed under key "([^"]+)"/.exec(rotated.stdout)![1]!;
    const sealedUnder = (key: string) => etcdValues(etcd.endpoint, set.prefix).find((kv) => kv.key === key)?.value.subarray(0, 21 + newId.length).toString("latin1");
    expect(sealedUnder(`${set.prefix}registry/passes/alice`)).toBe(`kpass:enc:aesgcm:v1:${newId}:`);
    expect(sealedUnder(`${set.prefix}secrets/token-signing.jwk`)).toBe(`kpass:enc:aesgcm:v1:${newId}:`);
    // The resealed values came to every replica through its watch; none was dropped as unreadable.
    for (const api of [a.api, onB, onC]) {
      await eventually(async () => {
        const names = ((await (await api("GET", PASSES)).json()).items as any[]).map((p) => p.metadata.name).sort();
        return JSON.stringify(names) === JSON.stringify(before) ? true : undefined;
      }, 5000);
      expect((await api("GET", `${CLUSTERS}/c1`)).status).toBe(200);
    }
    a.signal("SIGHUP");
    await eventually(async () => {
      const name = `after-hup-${randomBytes(2).toString("hex")}`;
      expect((await a.api("POST", PASSES, passManifest(name))).status).toBe(201);
      return sealedUnder(`${set.prefix}registry/passes/${name}`) === `kpass:enc:aesgcm:v1:${newId}:` ? name : undefined;
    }, 5000).then((name) => eventually(async () => ((await onB("GET", `${PASSES}/${name}`)).status === 200 ? true : undefined), 5000));
    // A pass token issued after the rotation works through another replica.
    const { token } = await createPass(a.api, "post-rotation", viewSpec("post-rotation"));
    await within(5000, "the new token on C", async () => (await fetch(`${proxyUrl(c, "c1")}/api/v1/namespaces/default/configmaps`, { headers: { authorization: `Bearer ${token}` }, tls: { ca: c.caPem } } as RequestInit)).status === 200);
  });

  test("5b. after etcd compacts past a paged LIST's revision, continuing it on another replica is 410 Expired", async () => {
    const first = await (await a.api("GET", `${PASSES}?limit=1`)).json();
    expect(first.metadata.continue).toBeTruthy();
    await createPass(a.api, "after-first-page", viewSpec("x"));
    const revision = JSON.parse(etcdctl(etcd.endpoint, ["get", "--prefix", set.prefix, "--limit", "1", "-w", "json"]).stdout).header.revision as number;
    etcdctl(etcd.endpoint, ["compact", String(revision)]);
    await eventually(async () => ((await onB("GET", `${PASSES}/after-first-page`)).status === 200 ? true : undefined), 5000);
    const response = await onB("GET", `${PASSES}?limit=1&continue=${encodeURIComponent(first.metadata.continue)}`);
    const status = await response.json();
    expect(response.status).toBe(410);
    expect(status).toMatchObject({ kind: "Status", code: 410, reason: "Expired" });
    // A fresh list still works on every replica after the compaction.
    for (const api of [a.api, onB, onC]) expect((await api("GET", PASSES)).status).toBe(200);
  });
});

describe.skipIf(!available)("replicas started at the same moment on an empty prefix", () => {
  test("all three start; they share one CA and one admin pass, and each one's admin token works on the others", async () => {
    const set = await startReplicas(etcd.endpoint, 3, { together: true });
    try {
      const [a, b, c] = set.replicas as [KpassProcess, KpassProcess, KpassProcess];
      expect(new Set([a.caPem, b.caPem, c.caPem]).size).toBe(1);
      for (const [holder, other] of [[a, b], [b, c], [c, a]] as const) {
        const response = await other.api("GET", "/apis/cluster.kpass.dev/v1beta1/passes/admin", undefined, { token: holder.adminToken });
        expect(response.status).toBe(200);
      }
      const uids = await Promise.all(set.replicas.map(async (r) => (await (await r.api("GET", "/apis/cluster.kpass.dev/v1beta1/passes/admin")).json()).metadata.uid));
      expect(new Set(uids).size).toBe(1);
    } finally {
      await set.stop();
    }
  });
});

describe.skipIf(!available)("a replica killed with SIGKILL while it acknowledges creates", () => {
  test("6. every create A acknowledged (201) before its SIGKILL is present via B", async () => {
    const set = await startReplicas(etcd.endpoint, 2);
    groups.push(set);
    const [a, b] = set.replicas as [KpassProcess, KpassProcess];
    const acknowledged: string[] = [];
    const failed: string[] = [];
    let next = 0;
    let killed = false;
    const worker = async () => {
      while (next < 200) {
        const name = `burst-${next++}`;
        try {
          const response = await a.api("POST", PASSES, passManifest(name, viewSpec(name)));
          if (response.status === 201) acknowledged.push(name);
          else failed.push(`${name}: ${response.status}`);
        } catch {
          failed.push(`${name}: connection`);
          if (killed) return;
        }
        if (acknowledged.length >= 50 && !killed) {
          killed = true;
          process.kill(a.pid, "SIGKILL");
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(killed).toBe(true);
    expect(await a.exited).not.toBe(0);
    expect(acknowledged.length).toBeGreaterThanOrEqual(50);
    expect(acknowledged.length).toBeLessThan(200);
    expect(failed.some((f) => f.endsWith("connection"))).toBe(true);
    const onB = asAdminOf(a, b);
    const missing = await eventually(async () => {
      const names = new Set(((await (await onB("GET", PASSES)).json()).items as any[]).map((p) => p.metadata.name));
      const absent = acknowledged.filter((n) => !names.has(n));
      return absent.length === 0 ? absent : undefined;
    }, 5000).catch(() => "some acknowledged creates are missing");
    expect(missing).toEqual([]);

    // A restarted on its data directory serves what it acknowledged before it died.
    const again = await startKpass({ dataDir: a.dataDir, args: etcdArgs(etcd.endpoint, set.prefix, set.keyFile) });
    singles.push(again);
    const names = new Set(((await (await again.api("GET", PASSES)).json()).items as any[]).map((p) => p.metadata.name));
    expect(acknowledged.filter((n) => !names.has(n))).toEqual([]);
  });

  test("6b. a replica whose key file lacks the key the store is sealed with does not start serving", async () => {
    const set = await startReplicas(etcd.endpoint, 1);
    groups.push(set);
    const stranger = writeKeyFile("stranger");
    const started = await startKpass({ args: etcdArgs(etcd.endpoint, set.prefix, stranger.file) }).then(
      (k) => {
        singles.push(k);
        return "started";
      },
      (error: Error) => error.message,
    );
    expect(started).toContain("which the encryption key file does not hold");
    expect(started).not.toBe("started");
  });
});

describe.skipIf(!available)("etcd unreachable, then back", () => {
  let ownEtcd: EtcdProcess;
  afterAll(async () => {
    await ownEtcd?.stop();
  });

  test("7. writes 503 (Status), reads 200 from memory, /readyz 200 degraded; after restart writes work within 10 s and a watch on B got every acknowledged write once", async () => {
    ownEtcd = await startEtcd();
    const set = await startReplicas(ownEtcd.endpoint, 2);
    groups.push(set);
    const [a, b] = set.replicas as [KpassProcess, KpassProcess];
    const onB = asAdminOf(a, b);
    const list = await (await onB("GET", PASSES)).json();
    const watch = openStream(`${b.url}${PASSES}?watch=true&resourceVersion=${list.metadata.resourceVersion}`, a.adminToken, b.caPem);
    const acknowledged: string[] = [];
    const refused: string[] = [];
    const create = async (name: string) => {
      const response = await a.api("POST", PASSES, passManifest(name, viewSpec(name)));
      if (response.status === 201) acknowledged.push(name);
      return response;
    };
    try {
      await watch.headers;
      for (let i = 0; i < 3; i++) expect((await create(`before-${i}`)).status).toBe(201);

      await ownEtcd.kill();
      const during = await create("during-0");
      expect(during.status).toBe(503);
      refused.push("during-0");
      expect(await during.json()).toMatchObject({ kind: "Status", code: 503 });
      const read = await a.api("GET", `${PASSES}/before-0`);
      expect(read.status).toBe(200);
      expect((await read.json()).metadata.name).toBe("before-0");
      expect((await a.api("GET", PASSES)).status).toBe(200);
      const readyz = await eventually(async () => {
        const response = await fetch(`${a.url}/readyz?verbose`, { tls: { ca: a.caPem } } as RequestInit);
        const text = await response.text();
        return response.status === 200 && text.includes("store degraded") ? text : undefined;
      }, 10_000).catch(() => "readyz never said degraded");
      expect(readyz).toContain("store degraded");
      for (let i = 1; i < 3; i++) {
        const response = await create(`during-${i}`);
        expect(response.status).toBe(503);
        refused.push(`during-${i}`);
      }

      await ownEtcd.restart();
      let attempt = 0;
      await within(10_000, "a write through A after etcd is back", async () => (await create(`after-${attempt++}`)).status === 201);
      for (let i = 0; i < 2; i++) expect((await create(`after-x${i}`)).status).toBe(201);
      const viaB = await onB("POST", PASSES, passManifest("after-via-b"));
      expect(viaB.status).toBe(201);
      acknowledged.push("after-via-b");
      await eventually(async () => {
        const response = await fetch(`${a.url}/readyz?verbose`, { tls: { ca: a.caPem } } as RequestInit);
        return response.status === 200 && !(await response.text()).includes("degraded") ? true : undefined;
      }, 10_000);
      await within(5000, "the watch on B saw every acknowledged create", () => acknowledged.every((n) => watch.events.some((e) => e.type === "ADDED" && e.object.metadata.name === n)));
      await Bun.sleep(300);
      const added = watch.events.filter((e) => e.type === "ADDED").map((e) => e.object.metadata.name as string);
      for (const name of acknowledged) expect(added.filter((n) => n === name)).toEqual([name]);
      for (const name of refused) expect(added).not.toContain(name);
      expect(watch.endedAt()).toBeUndefined();
    } finally {
      await watch.close();
    }
  }, 60_000);
});

describe.skipIf(!available)("the health prober moves when its replica dies", () => {
  test("8. the holder of <prefix>leader/prober is SIGKILLed; another replica takes the key within 15 s and probes a new Cluster", async () => {
    const set = await startReplicas(etcd.endpoint, 3, { extraArgs: ["--log-level", "debug"] });
    groups.push(set);
    const key = `${set.prefix}leader/prober`;
    const holder = () => etcdctl(etcd.endpoint, ["get", "--print-value-only", key]).stdout.trim();
    const pidOf = (value: string) => Number(value.split("/")[1]);
    const first = await eventually(() => holder() || undefined, 10_000);
    const leader = set.replicas.find((r) => r.pid === pidOf(first));
    expect(leader).toBeDefined();
    process.kill(leader!.pid, "SIGKILL");
    await leader!.exited;
    await within(15_000, "another replica holds the prober key", () => {
      const now = holder();
      return now !== "" && pidOf(now) !== leader!.pid;
    }).catch((error: Error) => {
      const survivors = set.replicas.filter((r) => r !== leader);
      const lines = survivors.flatMap((r) => r.stderr().split("\n").filter((l) => l.includes("leader/prober")).slice(-2));
      throw new Error(`${error.message}; key now ${JSON.stringify(holder())}; survivors said:\n${lines.join("\n")}`);
    });
    const successor = set.replicas.find((r) => r.pid === pidOf(holder()))!;
    expect(successor).toBeDefined();
    const other = set.replicas.find((r) => r !== leader && alive(r.pid))!;
    const api = asAdminOf(set.replicas[0]!, other);
    expect((await api("POST", CLUSTERS, clusterManifest("probed-later", fixture, { token: CLUSTER_TOKEN }))).status).toBe(201);
    const status = await eventually(async () => {
      const object = await (await api("GET", `${CLUSTERS}/probed-later`)).json();
      const ready = (object.status?.conditions ?? []).find((c: { type: string }) => c.type === "Ready");
      return ready?.status === "True" ? object.status : undefined;
    }, 15_000);
    expect(JSON.stringify(status)).toContain("v1.30.2");
  }, 45_000);
});

describe.skipIf(!available)("a file-store kpass: sealed files, copied to etcd, keys rotated", () => {
  let file: KpassProcess;
  let passToken: string;
  const copyPrefix = randomPrefix();
  const key = writeKeyFile("copy1");

  beforeAll(async () => {
    file = await startKpass();
    singles.push(file);
    expect((await file.api("POST", CLUSTERS, clusterManifest("c1", fixture, { token: CLUSTER_TOKEN }))).status).toBe(201);
    passToken = (await createPass(file.api, "carried", viewSpec("carried"))).token;
  });

  test("9b. nothing readable in clear in a file-store data directory (objects/, *.key, token-signing.jwk)", async () => {
    // The running kpass's prober writes status meanwhile: its temp files (".name.json.….tmp") come and go.
    const files = filesUnder(file.dataDir).filter((f) => !basename(f).startsWith(".") && (f.includes(`${file.dataDir}/objects/`) || f.endsWith(".key") || f.endsWith(".jwk")));
    expect(files.some((f) => f.endsWith("token-signing.jwk"))).toBe(true);
    expect(files.some((f) => f.includes("/objects/"))).toBe(true);
    const findings = files.flatMap((f) => cleartextFindings(readFileSync(f).toString("latin1"), [passToken]).map((n) => `${f.slice(file.dataDir.length)}: ${n}`));
    expect(findings).toEqual([]);
  });

  test("10. kpass store copy file→etcd: a replica there serves the Cluster and Pass and honours the file kpass's token; rotate-key reseals everything and a restarted replica still serves", async () => {
    const proxied = (k: KpassProcess) => fetch(`${proxyUrl(k, "c1")}/api/v1/namespaces/default/configmaps`, { headers: { authorization: `Bearer ${passToken}` }, tls: { ca: k.caPem } } as RequestInit);
    expect((await proxied(file)).status).toBe(200);
    await file.stop();

    const copied = await kpassCli(["store", "copy", "--from", `file:${file.dataDir}`, "--to", `etcd:${etcd.endpoint}`, "--etcd-prefix", copyPrefix, "--encryption-key-file", key.file]);
    expect(copied.stderr).toBe("");
    expect(copied.exitCode).toBe(0);
    // The file kpass's own passes (its admin's) come along with "carried".
    expect(copied.stdout).toMatch(/copied 1 clusters, \d+ passes and 5 shared secrets/);

    const set = await startReplicas(etcd.endpoint, 1, { prefix: copyPrefix, keyFile: key.file });
    groups.push(set);
    const replica = set.replicas[0]!;
    expect(replica.caPem).toBe(file.caPem);
    const onReplica = asAdminOf(file, replica);
    expect((await (await onReplica("GET", `${CLUSTERS}/c1`)).json()).spec.access.endpoint).toBe(fixture.url);
    expect((await (await onReplica("GET", `${PASSES}/carried`)).json()).spec.user).toBe("carried");
    expect((await proxied(replica)).status).toBe(200);

    await replica.stop();
    const rotated = await kpassCli(["store", "rotate-key", "--new-key", ...etcdArgs(etcd.endpoint, copyPrefix, key.file), "--data", replica.dataDir]);
    expect(rotated.exitCode).toBe(0);
    const newId = /sealed under key "([^"]+)"/.exec(rotated.stdout)?.[1];
    expect(newId).toBeDefined();
    expect(newId).not.toBe(key.id);
    expect(readFileSync(key.file, "utf8").split("\n")[0]).toStartWith(`${newId}:`);
    const values = etcdValues(etcd.endpoint, copyPrefix).filter((kv) => !kv.key.includes("/leader/") && !kv.key.endsWith("/.sync"));
    expect(values.length).toBeGreaterThanOrEqual(4);
    for (const { key: name, value } of values) expect(`${name}: ${value.subarray(0, 21 + newId!.length).toString("latin1")}`).toBe(`${name}: kpass:enc:aesgcm:v1:${newId}:`);

    const restarted = await startKpass({ dataDir: replica.dataDir, args: etcdArgs(etcd.endpoint, copyPrefix, key.file) });
    singles.push(restarted);
    const onRestarted = asAdminOf(file, restarted);
    expect((await onRestarted("GET", `${CLUSTERS}/c1`)).status).toBe(200);
    expect((await onRestarted("GET", `${PASSES}/carried`)).status).toBe(200);
    expect((await proxied(restarted)).status).toBe(200);
    expect((await restarted.api("POST", PASSES, passManifest("after-rotation"))).status).toBe(201);
  }, 60_000);
});

describe.skipIf(!available)("the compiled binary on etcd", () => {
  const binary = join(ROOT, "dist", "kpass");
  /** Builds dist/kpass once: not when it is newer than every source file. */
  function upToDate(): boolean {
    if (!existsSync(binary)) return false;
    const built = statSync(binary).mtimeMs;
    return filesUnder(join(ROOT, "src")).every((f) => statSync(f).mtimeMs < built);
  }

  test("11. dist/kpass --store etcd serves a create and a get", async () => {
    if (!upToDate()) {
      const build = Bun.spawn([process.execPath, "build", "--compile", "src/cli/main.ts", "--outfile", "dist/kpass"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
      const timer = setTimeout(() => build.kill("SIGKILL"), 90_000);
      const [code, err] = await Promise.all([build.exited, new Response(build.stderr).text()]);
      clearTimeout(timer);
      expect(err.includes("error:") ? err : "").toBe("");
      expect(code).toBe(0);
    }
    const key = writeKeyFile();
    const compiled = await startKpass({ executable: binary, args: etcdArgs(etcd.endpoint, randomPrefix(), key.file) });
    singles.push(compiled);
    expect((await compiled.api("POST", CLUSTERS, clusterManifest("compiled", fixture, { token: CLUSTER_TOKEN }))).status).toBe(201);
    const got = await runKubectl("1.33", ["--kubeconfig", compiled.adminKubeconfig, "--context", "kpass", "get", "clusters", "compiled", "-o", "json"]);
    expect(got.stderr).toBe("");
    expect(JSON.parse(got.stdout).metadata.name).toBe("compiled");
  }, 120_000);
});

describe.skipIf(!available)("an etcd that stops answering without closing its connections", () => {
  test("with no client writing, /readyz says degraded within 15 s of etcd freezing (SIGSTOP) and clean again within 15 s of it thawing", async () => {
    const frozen = await startEtcd();
    const set = await startReplicas(frozen.endpoint, 1);
    const [a] = set.replicas as [KpassProcess];
    const readyz = async () => (await fetch(`${a.url}/readyz`, { tls: { ca: a.caPem } })).text();
    try {
      expect(await readyz()).toBe("ok");
      process.kill(frozen.pid, "SIGSTOP");
      const degraded = await eventually(async () => ((await readyz()).includes("store degraded") ? readyz() : undefined), 15_000);
      expect(degraded).toContain("etcd did not answer a write");
      process.kill(frozen.pid, "SIGCONT");
      expect(await eventually(async () => ((await readyz()) === "ok" ? "ok" : undefined), 15_000)).toBe("ok");
      // The watch still delivers: a write is acknowledged (it waits for its own change to come back).
      const created = await a.api("POST", "/apis/cluster.kpass.dev/v1beta1/passes", { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name: "after-thaw" }, spec: { user: "u" } });
      expect(created.status).toBe(201);
    } finally {
      process.kill(frozen.pid, "SIGCONT");
      await set.stop();
      await frozen.stop();
    }
  }, 60_000);
});
