/**
 * @kubernetes/client-node (a second real client, besides kubectl) through a real kpass: CoreV1Api
 * list, Watch and Log follow — and when it aborts a watch or a log, the request to the cluster ends.
 *
 * The client runs in its own process (test/harness/client-node-kpass.ts) with NODE_EXTRA_CA_CERTS
 * holding kpass's CA, because in-process under Bun client-node's CA option is ignored (every call,
 * list included, fails with "unable to verify the first certificate"), and the Node 20 installed
 * here cannot load client-node 2.x (undici 8 needs Node ≥ 22.19). See design §6.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { RESOURCE_TYPES } from "./fixture/cluster/resources.ts";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { clusterManifest, eventually, proxyUrl, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";

const CONFIGMAPS = RESOURCE_TYPES.find((t) => t.resource === "configmaps")!;
const FIXTURE_TOKEN = `client-node-fixture-${crypto.randomUUID()}`;
const WATCH_NAME = `client-node-watched-${Date.now()}`;

type Step = { step: string; [key: string]: unknown };

describe("@kubernetes/client-node through kpass", () => {
  let fixture: TestCluster;
  let kpass: KpassProcess;
  let client: Subprocess<"pipe", "pipe", "pipe">;
  const steps: Step[] = [];
  let stderr = "";

  /** The next line the client printed for `name` (or fails with everything it printed). */
  async function nextStep(name: string, timeoutMs = 15_000): Promise<Step> {
    try {
      return await eventually(() => {
        const failed = steps.find((s) => s.step === "error");
        if (failed) throw new Error(`client-node failed: ${JSON.stringify(failed)}`);
        return steps.find((s) => s.step === name);
      }, timeoutMs);
    } catch (error) {
      throw new Error(`client-node step "${name}" not reached: ${String(error)}\nsteps: ${JSON.stringify(steps)}\nstderr: ${stderr}`);
    }
  }

  function proceed(): void {
    client.stdin.write("next\n");
    client.stdin.flush();
  }

  beforeAll(async () => {
    fixture = await startTestCluster({ credential: { type: "token", token: FIXTURE_TOKEN } });
    kpass = await startKpass();
    const res = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/clusters", clusterManifest("c1", fixture, { token: FIXTURE_TOKEN }));
    expect(res.status).toBe(201);
    const caFile = join(kpass.dataDir, "client-node-ca.pem");
    writeFileSync(caFile, kpass.caPem);

    client = Bun.spawn([process.execPath, join(import.meta.dir, "harness", "client-node-kpass.ts")], {
      cwd: join(import.meta.dir, ".."),
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: kpass.dataDir,
        KPASS_SERVER: proxyUrl(kpass, "c1"),
        KPASS_TOKEN: kpass.adminToken,
        WATCH_NAME,
        NODE_EXTRA_CA_CERTS: caFile,
      },
    });
    void (async () => {
      const decoder = new TextDecoder();
      let partial = "";
      for await (const chunk of client.stdout) {
        partial += decoder.decode(chunk, { stream: true });
        const lines = partial.split("\n");
        partial = lines.pop()!;
        for (const line of lines) {
          try {
            steps.push(JSON.parse(line) as Step);
          } catch {
            stderr += `[stdout] ${line}\n`;
          }
        }
      }
    })();
    void new Response(client.stderr).text().then((text) => (stderr += text));
  });

  afterAll(async () => {
    if (client && client.exitCode === null) client.kill();
    await client?.exited;
    await kpass?.stop();
    await fixture?.stop();
    if (kpass) removeDataDir(kpass.dataDir);
  });

  test("CoreV1Api lists pods (all, and by label selector)", async () => {
    const list = await nextStep("list");
    expect(list.all).toEqual(["default/web-0", "team-a/api-0", "team-a/worker-0", "team-b/db-0"]);
    expect(list.backend).toEqual(["team-a/api-0", "team-a/worker-0"]);
    const listed = fixture.requests.findLast((r) => r.path === "/api/v1/pods" && r.query.includes("labelSelector"));
    expect(listed?.query).toContain("labelSelector=tier%3Dbackend");
    expect(listed?.headers.authorization).toBe(`Bearer ${FIXTURE_TOKEN}`);
  });

  test("Watch gets ADDED for a configmap created meanwhile; abort ends the upstream watch", async () => {
    await nextStep("watching");
    await eventually(() => (fixture.activeStreams() === 1 ? true : undefined), 10_000);
    // Created behind the API, so the event can only reach the client through kpass's open watch.
    fixture.store.create(CONFIGMAPS, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: WATCH_NAME, namespace: "default" }, data: { from: "test" } });
    const event = await nextStep("watch-event");
    expect(event.added).toBe(true);
    expect(event.events).toContain("ADDED app-config");
    expect(event.events).toContain(`ADDED ${WATCH_NAME}`);
    expect(event.watchDone).toBeNull();
    await nextStep("watch-aborted");
    await eventually(() => (fixture.activeStreams() === 0 ? true : undefined), 3_000);
    proceed();
  });

  test("Log follow streams lines as they are written; abort ends the upstream stream", async () => {
    const log = await nextStep("log");
    expect(log.gotLines).toBe(true);
    const arrivals = log.arrivals as { line: string; at: number }[];
    expect(arrivals.slice(0, 4).map((a) => a.line)).toEqual(["web-0/main line 10", "web-0/main line 11", "web-0/main line 12", "web-0/main line 13"]);
    // One line every 200 ms at the cluster: streamed, not buffered until the end.
    expect(arrivals[3]!.at - arrivals[1]!.at).toBeGreaterThan(250);
    await nextStep("log-aborted");
    await eventually(() => (fixture.activeStreams() === 0 ? true : undefined), 3_000);
    proceed();
    await nextStep("done");
    expect(await client.exited).toBe(0);
  });

  test("the cluster saw only its stored token", () => {
    const served = fixture.requests.filter((r) => r.path.startsWith("/api/"));
    expect(served.length).toBeGreaterThanOrEqual(4);
    expect(served.filter((r) => r.headers.authorization !== `Bearer ${FIXTURE_TOKEN}`)).toEqual([]);
  });
});
