#!/usr/bin/env bun
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "../server/start.ts";
import { KPASS_VERSION } from "../core/version.ts";
import { ConfigFileError, configExample, defaultDataDir, parseServeArgs, serveHelp, serveSynopsis, serverConfig, showOptions } from "./serve-options.ts";
import { notifyReady } from "./sd-notify.ts";
import { systemdUnit } from "./systemd-unit.ts";

const USAGE = `kpass ${KPASS_VERSION} — one gateway, one credential per person, plain kubectl

Usage:
  kpass serve ${serveSynopsis("              ")}
  kpass config example | show [serve flags]
  kpass systemd-unit [--user kpass] [--group G] [--data /var/lib/kpass] [--binary /usr/local/bin/kpass] [serve flags]
  kpass version
  kpass cluster add NAME --kubeconfig FILE [--context CTX] [--label k=v]... [--impersonation none|user]
  kpass pass create NAME --user USER [--group G]... [--clusters a,b] [--role view]... [--ttl 720h] [--admin]
  kpass kubeconfig PASS [--context NAME]

\`kpass serve --help\` lists every serve flag, its config file key and default.
Client commands talk to a running kpass with --admin-kubeconfig (default <data>/admin.kubeconfig).
Data directory: --data, else $KPASS_DATA_DIR, else ~/.kpass.`;

function dataDir(value: string | undefined): string {
  return value ?? process.env.KPASS_DATA_DIR ?? defaultDataDir();
}

async function serve(args: string[]): Promise<void> {
  const invocation = parseServeArgs(args);
  if (invocation.help) {
    console.log(serveHelp());
    return;
  }
  // A bug reached from one request must not take the gateway down for everyone: log it, keep serving.
  process.on("uncaughtException", (error) => console.error("kpass: internal error (uncaught):", error));
  process.on("unhandledRejection", (error) => console.error("kpass: internal error (unhandled rejection):", error));
  const server = await startServer(serverConfig(invocation.options));
  console.error(`kpass ${KPASS_VERSION} listening on ${server.url}`);
  console.error(`admin kubeconfig: ${server.adminKubeconfigPath}`);
  console.error(`try: kubectl --kubeconfig ${server.adminKubeconfigPath} get clusters`);
  notifyReady(`listening on ${server.url}`);
  const shutdown = async () => {
    await server.stop();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

async function config(sub: string | undefined, args: string[]): Promise<void> {
  if (sub === "example" && args.length === 0) {
    process.stdout.write(configExample());
    return;
  }
  if (sub === "show") {
    process.stdout.write(showOptions(parseServeArgs(args).options));
    return;
  }
  throw new Error("usage: kpass config example | kpass config show [--config FILE] [serve flags]");
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
    case "config":
      return config(sub, rest);
    case "systemd-unit":
      process.stdout.write(systemdUnit(argv.slice(1)));
      return;
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
  // FILE:LINE:COL: problem, one a line, as compilers write them.
  if (error instanceof ConfigFileError) for (const problem of error.problems) console.error(`kpass: ${problem}`);
  else console.error(`kpass: ${error.message}`);
  process.exit(1);
});
