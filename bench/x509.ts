/**
 * Certificate passes against token passes (issue #12's benchmark; not a test): a small GET at 32
 * keep-alive connections with a certificate pass and with a token pass (the ratio should be ≥ 0.95),
 * and new TLS connections per second (one GET each, no keep-alive) with and without a client
 * certificate. Runs alternate token/cert twice so that drift on a shared machine hits both.
 * Bounded: every load run lasts --seconds; only processes it started are stopped.
 *
 * Run: bun bench/x509.ts [--seconds 5] [--connections 32]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startTestCluster } from "../test/fixture/cluster/server.ts";
import { clusterManifest, createPass, startKpass } from "../test/harness/kpass.ts";
import { newKeyAndCsr } from "../src/cli/certificate-request.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, connections: { type: "string", default: "32" } } });
const BUN = process.execPath;
const dir = mkdtempSync(join(tmpdir(), "kpass-bench-x509-"));
const cluster = await startTestCluster({ credential: { type: "token", token: "bench-token" }, recordRequests: false });
const kpass = await startKpass({ args: ["--audit", "off"] });
try {
  const created = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/clusters", clusterManifest("c1", cluster, { token: "bench-token" }));
  if (created.status !== 201) throw new Error(`cluster: ${created.status}`);
  const spec = { user: "bench", clusters: { names: ["c1"] }, roles: ["view"] };
  const token = await createPass(kpass, "bench-token", spec);
  await createPass(kpass, "bench-cert", spec);
  const { keyPem, csrPem } = await newKeyAndCsr("bench-cert");
  const issued = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/passes/bench-cert/certificate", { kind: "PassCertificateRequest", spec: { request: Buffer.from(csrPem).toString("base64") } });
  const certPem = Buffer.from((await issued.json()).status.certificate, "base64").toString();
  const files = { ca: join(dir, "ca.pem"), cert: join(dir, "client.crt"), key: join(dir, "client.key") };
  writeFileSync(files.ca, kpass.caPem);
  writeFileSync(files.cert, certPem);
  writeFileSync(files.key, keyPem, { mode: 0o600 });
  const url = `${kpass.url}/apis/cluster.kpass.dev/v1beta1/clusters/c1/proxy/api/v1/namespaces/default/pods/web-0`;

  async function load(kind: "token" | "cert", connections: number, fresh: boolean): Promise<{ rps: number; p50Ms: number; p99Ms: number; errors: number; non2xx: number }> {
    const credential = kind === "token" ? ["--token", token] : ["--cert", files.cert, "--key", files.key];
    const proc = Bun.spawn([BUN, join(import.meta.dir, "loadgen.ts"), "--url", url, "--ca", files.ca, ...credential, "--connections", String(connections), "--duration", values.seconds!, ...(fresh ? ["--new-connections"] : [])], { stdout: "pipe", stderr: "inherit" });
    const timer = setTimeout(() => proc.kill(), (Number(values.seconds) + 30) * 1000);
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    clearTimeout(timer);
    return JSON.parse(out.trim().split("\n").pop()!);
  }

  const rows: string[] = ["| run | token rps | cert rps | cert/token | token p99 ms | cert p99 ms |", "|---|---|---|---|---|---|"];
  for (const [label, connections, fresh] of [["small GET, 32 keep-alive connections", Number(values.connections), false], ["new TLS connection per GET, 4 at a time", 4, true]] as const) {
    for (let round = 1; round <= 2; round++) {
      const t = await load("token", connections, fresh);
      const c = await load("cert", connections, fresh);
      if (t.errors + t.non2xx + c.errors + c.non2xx > 0) console.error(`errors: token ${JSON.stringify(t)} cert ${JSON.stringify(c)}`);
      rows.push(`| ${label} (round ${round}) | ${t.rps.toFixed(0)} | ${c.rps.toFixed(0)} | ${(c.rps / t.rps).toFixed(3)} | ${t.p99Ms.toFixed(2)} | ${c.p99Ms.toFixed(2)} |`);
      console.error(rows.at(-1));
    }
  }
  console.log(rows.join("\n"));
} finally {
  await kpass.stop();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(kpass.dataDir, { recursive: true, force: true });
}
