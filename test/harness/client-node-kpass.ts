/**
 * Drives @kubernetes/client-node against a kpass cluster proxy, one step at a time, so the test
 * that spawns it can look at the cluster between steps. Protocol: one JSON object per stdout line
 * ({step, …}); where it says "wait", the script reads one line from stdin before going on.
 *
 * Runs under Bun in its own process, with NODE_EXTRA_CA_CERTS holding kpass's CA: under Bun,
 * client-node's undici dispatcher (which carries the kubeconfig CA) is ignored, so every call fails
 * TLS verification in-process; and Node 20 on these machines cannot load client-node 2.x at all
 * (its undici 8 needs node:zlib zstd, Node ≥ 22.19). Design §6.
 *
 *   KPASS_SERVER=https://…/clusters/c1/proxy KPASS_TOKEN=… WATCH_NAME=cm NODE_EXTRA_CA_CERTS=ca.pem \
 *     bun test/harness/client-node-kpass.ts
 */
import * as k8s from "@kubernetes/client-node";
import { PassThrough } from "node:stream";
import { createInterface } from "node:readline";

// Aborting a client-node watch/log under Bun re-emits the abort on an internal stream; that is the
// intended way to stop them, so it must not end the script.
process.on("uncaughtException", (error) => {
  if (String(error).includes("abort") || (error as Error).name === "AbortError") return;
  emit({ step: "error", message: String(error) });
  process.exit(1);
});

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function waitForParent(): Promise<void> {
  const next = await stdinLines.next();
  if (next.done) process.exit(2);
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(20);
  }
  return true;
}

const server = process.env.KPASS_SERVER!;
const token = process.env.KPASS_TOKEN!;
const watchName = process.env.WATCH_NAME!;

const kc = new k8s.KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: "kpass", server, skipTLSVerify: false }],
  users: [{ name: "u", token }],
  contexts: [{ name: "ctx", cluster: "kpass", user: "u", namespace: "default" }],
  currentContext: "ctx",
});
const core = kc.makeApiClient(k8s.CoreV1Api);

try {
  // 1. CoreV1Api list.
  const pods = await core.listPodForAllNamespaces({ labelSelector: "tier=backend" });
  const all = await core.listPodForAllNamespaces();
  emit({
    step: "list",
    backend: pods.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).sort(),
    all: all.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).sort(),
  });

  // 2. Watch: report when watching, wait for an ADDED event for WATCH_NAME, then abort.
  const events: string[] = [];
  let watchDone: string | undefined;
  const watchRequest = await new k8s.Watch(kc).watch(
    "/api/v1/namespaces/default/configmaps",
    {},
    (type, object: k8s.KubernetesObject) => events.push(`${type} ${object.metadata?.name}`),
    (error) => (watchDone = String(error ?? "ended")),
  );
  emit({ step: "watching" });
  const added = await until(() => events.includes(`ADDED ${watchName}`) || watchDone !== undefined, 10_000);
  emit({ step: "watch-event", added, events, watchDone: watchDone ?? null });
  watchRequest.abort();
  emit({ step: "watch-aborted" });
  await waitForParent();

  // 3. Log follow: read a few lines as they arrive, then abort.
  let text = "";
  const arrivals: { line: string; at: number }[] = [];
  const out = new PassThrough();
  out.on("data", (chunk: Buffer) => {
    text += chunk.toString();
    const lines = text.split("\n").filter(Boolean);
    for (const line of lines.slice(arrivals.length)) arrivals.push({ line, at: performance.now() });
  });
  out.on("error", () => {});
  const logRequest = await new k8s.Log(kc).log("default", "web-0", "main", out, { follow: true, tailLines: 1 });
  const gotLines = await until(() => arrivals.length >= 4, 10_000);
  emit({ step: "log", gotLines, arrivals });
  logRequest.abort();
  emit({ step: "log-aborted" });
  await waitForParent();

  emit({ step: "done" });
  process.exit(0);
} catch (error) {
  const e = error as { code?: number; body?: unknown; message?: string };
  emit({ step: "error", message: e.message ?? String(error), code: e.code ?? null, body: e.body ?? null });
  process.exit(1);
}
