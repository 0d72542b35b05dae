#!/usr/bin/env bun
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "../server/start.ts";
import { KPASS_VERSION } from "../core/version.ts";
import { parseDuration } from "../core/duration.ts";

const USAGE = `kpass ${KPASS_VERSION} — one gateway, one credential per person, plain kubectl

Usage:
  kpass serve [--data DIR] [--listen HOST:PORT] [--san NAME]... [--external-url URL]
              [--tls-cert FILE --tls-key FILE [--ca-cert FILE]] [--probe-interval 60s]
              [--upstream-timeout 60s] [--connect-timeout 10s]
              [--idle-timeout 2m] [--max-streams-per-pass 1000] [--audit file|stdout|both|off] [--audit-max-size 100Mi]
              [--audit-max-backups 10] [--metrics-listen 127.0.0.1:PORT] [--metrics on|off]
  kpass version
  kpass cluster add NAME --kubeconfig FILE [--context CTX] [--label k=v]... [--impersonation none|user]
  kpass pass create NAME --user USER [--group G]... [--clusters a,b] [--role view]... [--ttl 720h] [--admin]
  kpass kubeconfig PASS [--context NAME]

Client commands talk to a running kpass with --admin-kubeconfig (default <data>/admin.kubeconfig).
Data directory: --data, else $KPASS_DATA_DIR, else ~/.kpass.`;

function dataDir(value: string | undefined): string {
  return value ?? process.env.KPASS_DATA_DIR ?? join(homedir(), ".kpass");
}

function durationMs(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new Error(`${flag}: "${text}" is not a duration such as 30s or 5m`);
  return ms;
}

function bytes(text: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(text);
  if (!m) throw new Error(`--audit-max-size: "${text}" is not a size such as 100Mi`);
  return Number(m[1]) * ({ Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] as "Ki"] ?? 1);
}

function count(text: string, flag: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 10_000) throw new Error(`${flag}: "${text}" is not a number from 0 to 10000`);
  return Number(text);
}

function splitListen(listen: string, flag = "--listen"): { hostname: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`${flag}: "${listen}" must be HOST:PORT`);
  return { hostname: m[1] || "0.0.0.0", port: Number(m[2]) };
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: "string" },
      listen: { type: "string", default: "127.0.0.1:8443" },
      san: { type: "string", multiple: true, default: [] },
      "external-url": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "ca-cert": { type: "string" },
      "probe-interval": { type: "string", default: "60s" },
      "upstream-timeout": { type: "string", default: "60s" },
      "connect-timeout": { type: "string" },
      "idle-timeout": { type: "string", default: "2m" },
      "max-streams-per-pass": { type: "string", default: "1000" },
      audit: { type: "string", default: "file" },
      "audit-max-size": { type: "string", default: "100Mi" },
      // Rotated audit.log.1 … audit.log.N kept, like kube-apiserver's --audit-log-maxbackup (0 keeps all).
      "audit-max-backups": { type: "string", default: "10" },
      // Plain-HTTP /metrics without auth, loopback only; `--metrics off` exists to measure their cost.
      "metrics-listen": { type: "string" },
      metrics: { type: "string", default: "on" },
    },
  });
  if (values.metrics !== "on" && values.metrics !== "off") throw new Error(`--metrics must be on or off`);
  const audit = values.audit!;
  if (!["file", "stdout", "both", "off"].includes(audit)) throw new Error(`--audit must be file, stdout, both or off`);
  // A bug reached from one request must not take the gateway down for everyone: log it, keep serving.
  process.on("uncaughtException", (error) => console.error("kpass: internal error (uncaught):", error));
  process.on("unhandledRejection", (error) => console.error("kpass: internal error (unhandled rejection):", error));
  const server = await startServer({
    dataDir: dataDir(values.data),
    ...splitListen(values.listen!),
    sans: values.san!,
    externalUrl: values["external-url"],
    tlsCertFile: values["tls-cert"],
    tlsKeyFile: values["tls-key"],
    caFile: values["ca-cert"],
    probeIntervalMs: durationMs(values["probe-interval"]!, "--probe-interval"),
    upstreamTimeoutMs: durationMs(values["upstream-timeout"]!, "--upstream-timeout"),
    // Default: 10 s, or the upstream timeout when that is shorter.
    connectTimeoutMs: values["connect-timeout"] === undefined ? undefined : durationMs(values["connect-timeout"], "--connect-timeout"),
    idleTimeoutSeconds: durationMs(values["idle-timeout"]!, "--idle-timeout") / 1000,
    maxStreamsPerPass: count(values["max-streams-per-pass"]!, "--max-streams-per-pass"),
    audit: { file: audit === "file" || audit === "both", stdout: audit === "stdout" || audit === "both", maxBytes: bytes(values["audit-max-size"]!), maxBackups: count(values["audit-max-backups"]!, "--audit-max-backups") },
    metrics: values.metrics === "on",
    metricsListen: values["metrics-listen"] === undefined ? undefined : splitListen(values["metrics-listen"], "--metrics-listen"),
  });
  console.error(`kpass ${KPASS_VERSION} listening on ${server.url}`);
  if (server.metricsUrl) console.error(`metrics (no authentication, loopback): ${server.metricsUrl}`);
  console.error(`admin kubeconfig: ${server.adminKubeconfigPath}`);
  console.error(`try: kubectl --kubeconfig ${server.adminKubeconfigPath} get clusters`);
  const shutdown = async () => {
    await server.stop();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

// The client commands load @kubernetes/client-node (~50 MiB) only when they run, never in `serve`.
async function clientFor(values: { data?: string; "admin-kubeconfig"?: string }) {
  const { kpassClient } = await import("./kpass-client.ts");
  return kpassClient(values["admin-kubeconfig"] ?? join(dataDir(values.data), "admin.kubeconfig"));
}

async function expectOk(response: Response): Promise<unknown> {
  return (await import("./kpass-client.ts")).expectOk(response);
}

const clientOptions = { data: { type: "string" }, "admin-kubeconfig": { type: "string" } } as const;

async function clusterAdd(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...clientOptions, kubeconfig: { type: "string" }, context: { type: "string" }, label: { type: "string", multiple: true, default: [] }, impersonation: { type: "string" } },
  });
  const name = positionals[0];
  if (!name || !values.kubeconfig) throw new Error("usage: kpass cluster add NAME --kubeconfig FILE [--context CTX]");
  const labels = Object.fromEntries(values.label!.map((l) => l.split("=", 2) as [string, string]));
  const { accessFromKubeconfig } = await import("./import-kubeconfig.ts");
  const spec: Record<string, unknown> = { access: accessFromKubeconfig(values.kubeconfig, values.context) };
  if (values.impersonation) spec.impersonation = values.impersonation;
  const body = { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name, labels }, spec };
  await expectOk(await (await clientFor(values)).request("POST", "/apis/cluster.kpass.dev/v1beta1/clusters", body));
  console.log(`cluster.cluster.kpass.dev/${name} created`);
}

async function passCreate(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...clientOptions,
      user: { type: "string" },
      group: { type: "string", multiple: true, default: [] },
      clusters: { type: "string" },
      role: { type: "string", multiple: true, default: [] },
      namespace: { type: "string", multiple: true, default: [] },
      ttl: { type: "string" },
      admin: { type: "boolean", default: false },
    },
  });
  const name = positionals[0];
  if (!name) throw new Error("usage: kpass pass create NAME --user USER [--clusters a,b] [--role view] [--ttl 720h]");
  const spec: Record<string, unknown> = { user: values.user ?? name, groups: values.group, roles: values.role, clusters: { names: (values.clusters ?? "").split(",").filter(Boolean) } };
  if (values.namespace!.length > 0) spec.namespaces = values.namespace;
  if (values.ttl) spec.ttl = values.ttl;
  if (values.admin) spec.admin = true;
  const body = { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec };
  const created = (await expectOk(await (await clientFor(values)).request("POST", "/apis/cluster.kpass.dev/v1beta1/passes", body))) as { status?: { token?: string } };
  console.error(`pass.cluster.kpass.dev/${name} created; its token is shown once:`);
  console.log(created.status?.token ?? "");
}

async function kubeconfig(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...clientOptions, context: { type: "string" } } });
  const name = positionals[0];
  if (!name) throw new Error("usage: kpass kubeconfig PASS [--context NAME]");
  // current-context is `kpass` unless --context names another context of the generated kubeconfig.
  const query = values.context === undefined ? "" : `?context=${encodeURIComponent(values.context)}`;
  const response = await (await clientFor(values)).request("GET", `/apis/cluster.kpass.dev/v1beta1/passes/${encodeURIComponent(name)}/kubeconfig${query}`);
  if (!response.ok) await expectOk(response);
  process.stdout.write(await response.text());
}

async function main(argv: string[]): Promise<void> {
  const [command, sub, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(argv.slice(1));
    case "version":
      console.log(`kpass ${KPASS_VERSION} (bun ${Bun.version})`);
      return;
    case "cluster":
      if (sub === "add") return clusterAdd(rest);
      break;
    case "pass":
      if (sub === "create") return passCreate(rest);
      break;
    case "kubeconfig":
      return kubeconfig(argv.slice(1));
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return;
  }
  throw new Error(`unknown command "${argv.join(" ")}"\n\n${USAGE}`);
}

main(process.argv.slice(2)).catch((error: Error) => {
  console.error(`kpass: ${error.message}`);
  process.exit(1);
});
