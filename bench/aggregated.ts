/**
 * Aggregated mode (issue #13's benchmark; not a test): the same small GET
 * - direct: straight to kpass with a pass token;
 * - front-proxy: straight to kpass as the aggregator sends it (front-proxy client certificate,
 *   X-Remote-User/Group, keep-alive) — kpass's own cost of aggregated mode (SubjectAccessReview
 *   cached 10 s);
 * - via host: through the aggregator stand-in (test/fixture/host.ts), which opens a new TLS
 *   connection to kpass per request — the stand-in, not kpass, dominates this row.
 * Reports requests per second, ratios to direct and the added p50. Bounded: every load run lasts
 * --seconds; only processes it started are stopped.
 *
 * Run: bun bench/aggregated.ts [--seconds 5] [--connections 16]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startTestCluster } from "../test/fixture/cluster/server.ts";
import { startHost } from "../test/fixture/host.ts";
import { clusterManifest, createPass, startKpass } from "../test/harness/kpass.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, connections: { type: "string", default: "16" } } });
const BUN = process.execPath;
const dir = mkdtempSync(join(tmpdir(), "kpass-bench-aggregated-"));
const cluster = await startTestCluster({ credential: { type: "token", token: "bench-token" }, recordRequests: false });
const host = await startHost({
  users: { "alice-token": { name: "alice", groups: ["system:authenticated"] } },
  rules: [{ user: "alice", verbs: ["get"], resource: "clusters", subresource: "proxy", names: ["c1"] }],
});
const kpass = await startKpass({ args: ["--audit", "off", "--aggregated", "--host-kubeconfig", host.kubeconfigPath] });
host.setKpass(kpass.url, kpass.caPem);
try {
  const created = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/clusters", clusterManifest("c1", cluster, { token: "bench-token" }));
  if (created.status !== 201) throw new Error(`cluster: ${created.status}`);
  const passToken = await createPass(kpass, "bench", { user: "bench", clusters: { names: ["c1"] }, roles: ["view"] });
  const path = "/apis/cluster.kpass.dev/v1beta1/clusters/c1/proxy/api/v1/namespaces/default/pods/web-0";
  const files = { kpass: join(dir, "kpass-ca.pem"), host: join(dir, "host-ca.pem"), cert: join(dir, "front-proxy.crt"), key: join(dir, "front-proxy.key") };
  writeFileSync(files.kpass, kpass.caPem);
  writeFileSync(files.host, host.caPem);
  writeFileSync(files.cert, host.frontProxyClient.certPem);
  writeFileSync(files.key, host.frontProxyClient.keyPem, { mode: 0o600 });

  async function load(via: "direct" | "front-proxy" | "host"): Promise<{ rps: number; p50Ms: number; p99Ms: number; errors: number; non2xx: number }> {
    const args = via === "direct"
      ? ["--url", kpass.url + path, "--ca", files.kpass, "--token", passToken]
      : via === "front-proxy"
        ? ["--url", kpass.url + path, "--ca", files.kpass, "--cert", files.cert, "--key", files.key, "--header", "X-Remote-User:alice", "--header", "X-Remote-Group:system:authenticated"]
        : ["--url", host.url + path, "--ca", files.host, "--token", "alice-token"];
    const proc = Bun.spawn([BUN, join(import.meta.dir, "loadgen.ts"), ...args, "--connections", values.connections!, "--duration", values.seconds!], { stdout: "pipe", stderr: "inherit" });
    const timer = setTimeout(() => proc.kill(), (Number(values.seconds) + 30) * 1000);
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    clearTimeout(timer);
    return JSON.parse(out.trim().split("\n").pop()!);
  }

  const rows = ["| round | path | rps | / direct | p50 ms | added p50 ms |", "|---|---|---|---|---|---|"];
  for (let round = 1; round <= 2; round++) {
    const d = await load("direct");
    for (const via of ["direct", "front-proxy", "host"] as const) {
      const r = via === "direct" ? d : await load(via);
      if (r.errors + r.non2xx > 0) console.error(`errors (${via}): ${JSON.stringify(r)}`);
      rows.push(`| ${round} | ${via} | ${r.rps.toFixed(0)} | ${(r.rps / d.rps).toFixed(3)} | ${r.p50Ms.toFixed(2)} | ${(r.p50Ms - d.p50Ms).toFixed(2)} |`);
      console.error(rows.at(-1));
    }
  }
  console.log(rows.join("\n"));
} finally {
  await kpass.stop();
  host.stop();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(kpass.dataDir, { recursive: true, force: true });
}
