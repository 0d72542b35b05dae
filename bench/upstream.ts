/**
 * A small, fast stand-in for a kube-apiserver, for benchmarks only: Bun.serve over TLS with a
 * fresh CA, requiring one bearer token. It serves exactly what the benchmark asks for:
 *
 *   GET /version                                   version info (kpass's health probe uses it)
 *   GET /api/v1/namespaces/default/pods/web-0      one realistic Pod (~2.6 KB of JSON)
 *   GET /api/v1/pods                               a PodList of --list-bytes bytes (default 512 MiB),
 *                                                  generated on the fly and streamed chunked
 *
 * With --cpu-us N every pod GET first spends N µs of CPU (a busy loop), the way a real
 * kube-apiserver spends its own on authentication, authorization, admission and serialization:
 * against it a proxy's share of the machine counts as it would in front of a real cluster.
 *
 * --workers N serves from N processes on one port (SO_REUSEPORT), as a multi-threaded
 * kube-apiserver uses every core: then a proxy's CPU is taken from the cluster's.
 *
 * Run: bun bench/upstream.ts --token T --dir DIR [--list-bytes N] [--cpu-us N] [--workers N]
 * Prints one JSON line on stdout: {"url": "...", "caFile": "...", "podBytes": N, "listBytes": N}.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";

const { values } = parseArgs({
  options: {
    token: { type: "string", default: "bench-token" },
    dir: { type: "string" },
    "list-bytes": { type: "string", default: String(512 * 1024 * 1024) },
    port: { type: "string", default: "0" },
    "cpu-us": { type: "string", default: "0" },
    workers: { type: "string", default: "1" },
    "worker-of": { type: "string" },
  },
});
if (!values.dir) throw new Error("--dir is required");

/** A Pod shaped like what a real cluster returns for a small web pod. */
function benchPod(name: string, index = 0): Record<string, unknown> {
  const uid = `5f1c2d3e-${String(index).padStart(4, "0")}-4a6b-8c9d-0e1f2a3b4c5d`;
  return {
    kind: "Pod",
    apiVersion: "v1",
    metadata: {
      name,
      namespace: "default",
      uid,
      resourceVersion: String(100_000 + index),
      creationTimestamp: "2025-01-01T00:00:00Z",
      labels: { app: "web", tier: "frontend", "pod-template-hash": "7d9c8b6f5d", "statefulset.kubernetes.io/pod-name": name },
      annotations: { "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z" },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "StatefulSet", name: "web", uid: "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      volumes: [{ name: "kube-api-access-abcde", projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: "token" } }, { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } }], defaultMode: 420 } }],
      containers: [
        {
          name: "main",
          image: "nginx:1.27",
          ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
          env: [{ name: "POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } }],
          resources: { limits: { cpu: "500m", memory: "256Mi" }, requests: { cpu: "100m", memory: "128Mi" } },
          volumeMounts: [{ name: "kube-api-access-abcde", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
          readinessProbe: { httpGet: { path: "/healthz", port: 8080, scheme: "HTTP" }, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
          terminationMessagePath: "/dev/termination-log",
          terminationMessagePolicy: "File",
          imagePullPolicy: "IfNotPresent",
        },
      ],
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: "ClusterFirst",
      serviceAccountName: "default",
      serviceAccount: "default",
      nodeName: "node-1",
      securityContext: {},
      schedulerName: "default-scheduler",
      tolerations: [
        { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
        { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: "PreemptLowerPriority",
    },
    status: {
      phase: "Running",
      conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({ type, status: "True", lastProbeTime: null, lastTransitionTime: "2025-01-01T00:00:05Z" })),
      hostIP: "10.0.0.11",
      podIP: "10.244.1.17",
      podIPs: [{ ip: "10.244.1.17" }],
      startTime: "2025-01-01T00:00:00Z",
      containerStatuses: [
        {
          name: "main",
          state: { running: { startedAt: "2025-01-01T00:00:04Z" } },
          lastState: {},
          ready: true,
          restartCount: 0,
          image: "docker.io/library/nginx:1.27",
          imageID: "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          containerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          started: true,
        },
      ],
      qosClass: "Burstable",
    },
  };
}

const token = values.token!;
const cpuMs = Number(values["cpu-us"]) / 1000;

/** Spends `cpuMs` of CPU on this thread (a wall-clock spin: the upstream has the core to itself while it spins). */
function spendCpu(): void {
  if (cpuMs <= 0) return;
  const until = performance.now() + cpuMs;
  while (performance.now() < until);
}
const listBytes = Number(values["list-bytes"]);
const caFile = join(values.dir, "upstream-ca.crt");
const workerOf = values["worker-of"];
// Extra workers serve the first one's certificate on the first one's port.
const serving = workerOf
  ? { certPem: readFileSync(join(values.dir, "upstream.crt"), "utf8"), keyPem: readFileSync(join(values.dir, "upstream.key"), "utf8") }
  : await (async () => {
      const ca = await createCertificateAuthority("kpass-bench-upstream-ca");
      const pair = await issueServingCertificate(ca, { commonName: "bench-upstream", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
      writeFileSync(caFile, ca.certPem);
      writeFileSync(join(values.dir!, "upstream.crt"), pair.certPem);
      writeFileSync(join(values.dir!, "upstream.key"), pair.keyPem, { mode: 0o600 });
      return pair;
    })();

const podBody = JSON.stringify(benchPod("web-0"));
const versionBody = JSON.stringify({ major: "1", minor: "30", gitVersion: "v1.30.2", gitCommit: "bench", gitTreeState: "clean", buildDate: "2025-01-01T00:00:00Z", goVersion: "go1.22.4", compiler: "gc", platform: "linux/amd64" });
const jsonHeaders = { "content-type": "application/json", "cache-control": "no-cache, private" };

// The LIST body: head, N items (a 64 KiB-ish block of items repeated), tail. Exactly `listBytes`
// is not possible with whole items, so the body is the smallest whole number of blocks ≥ target.
const encoder = new TextEncoder();
const listHead = encoder.encode(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"123456"},"items":[`);
const listTail = encoder.encode(`]}`);
const items: string[] = [];
let blockLength = 0;
for (let i = 0; blockLength < 64 * 1024; i++) {
  const item = JSON.stringify(benchPod(`web-${i}`, i));
  items.push(item);
  blockLength += item.length + 1;
}
const firstBlock = encoder.encode(items.join(","));
const block = encoder.encode("," + items.join(","));
const blocks = Math.max(1, Math.ceil((listBytes - listHead.length - listTail.length - firstBlock.length) / block.length) + 1);
const listTotal = listHead.length + firstBlock.length + (blocks - 1) * block.length + listTail.length;

function listStream(): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (sent === 0) controller.enqueue(listHead), controller.enqueue(firstBlock);
        else if (sent < blocks) controller.enqueue(block);
        else {
          controller.enqueue(listTail);
          controller.close();
        }
        sent++;
      },
    },
    { highWaterMark: 4 },
  );
}

function status(code: number, reason: string, message: string): Response {
  return Response.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }, { status: code, headers: jsonHeaders });
}

const workers = Math.max(1, Number(values.workers));
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(workerOf ?? values.port),
  reusePort: workers > 1 || workerOf !== undefined,
  tls: { cert: serving.certPem, key: serving.keyPem },
  idleTimeout: 120,
  fetch(req) {
    if (req.headers.get("authorization") !== `Bearer ${token}`) return status(401, "Unauthorized", "Unauthorized");
    const url = req.url;
    const path = url.slice(url.indexOf("/", 8)).split("?")[0];
    if (req.method !== "GET") return status(405, "MethodNotAllowed", "benchmark upstream serves GET only");
    switch (path) {
      case "/api/v1/namespaces/default/pods/web-0":
        spendCpu();
        return new Response(podBody, { headers: jsonHeaders });
      case "/version":
        return new Response(versionBody, { headers: jsonHeaders });
      case "/api/v1/pods":
        return new Response(listStream(), { headers: jsonHeaders });
    }
    return status(404, "NotFound", `the server could not find the requested resource (${path})`);
  },
});

const children = workerOf
  ? []
  : Array.from({ length: workers - 1 }, () =>
      Bun.spawn([process.execPath, import.meta.path, ...process.argv.slice(2), "--worker-of", String(server.port)], { stdin: "ignore", stdout: "ignore", stderr: "inherit" }),
    );
// The bench measures only once every worker listens.
for (let i = 0; i < 100 && children.length > 0; i++) {
  const listening = Number(Bun.spawnSync(["sh", "-c", `ss -Htln 'sport = :${server.port}' | wc -l`]).stdout.toString().trim());
  if (listening >= workers) break;
  await Bun.sleep(50);
}
if (!workerOf) console.log(JSON.stringify({ url: `https://127.0.0.1:${server.port}`, caFile, podBytes: podBody.length, listBytes: listTotal }));

const shutdown = () => {
  for (const child of children) child.kill();
  server.stop(true);
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
