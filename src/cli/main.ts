#!/usr/bin/env bun
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer } from "../server/start.ts";
import { KPASS_VERSION } from "../core/version.ts";
import { parseDuration } from "../core/duration.ts";
import { configureLog, logger } from "../core/log.ts";
import { ConfigFileError, configExample, defaultDataDir, parseServeArgs, serveHelp, serveSynopsis, serverConfig, showOptions } from "./serve-options.ts";
import { notifyReady } from "./sd-notify.ts";
import { systemdUnit } from "./systemd-unit.ts";
import { reloadSettings } from "./settings-reload.ts";
import { STORE_USAGE, storeCommand } from "./store-command.ts";

const USAGE = `kpass ${KPASS_VERSION} — one gateway, one credential per person, plain kubectl

Usage:
  kpass serve ${serveSynopsis("              ")}
  kpass config example | show [serve flags]
  kpass systemd-unit [--user kpass] [--group G] [--data /var/lib/kpass] [--binary /usr/local/bin/kpass] [serve flags]
  kpass version
  kpass cluster add NAME --kubeconfig FILE [--context CTX] [--label k=v]... [--impersonation none|user]
  kpass pass create NAME --user USER [--group G]... [--clusters a,b] [--role view]... [--ttl 720h] [--admin]
  kpass pass certificate NAME --csr FILE [--ttl 24h]     (prints the PEM certificate)
  kpass kubeconfig PASS [--context NAME] [--cert [--cert-ttl 24h]]
  kpass apiservice [--service-namespace kpass] [--service-name kpass] [--service-port 443] [--target-port 8443]
                   [--user NAME] [--ca-cert FILE]   (APIService, Service, host RBAC for aggregated mode)
${STORE_USAGE}

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
  configureLog({ format: invocation.options.logFormat, level: invocation.options.logLevel });
  // A bug reached from one request must not take the gateway down for everyone: log it, keep serving.
  process.on("uncaughtException", (error) => logger.error("internal error (uncaught)", { error }));
  process.on("unhandledRejection", (error) => logger.error("internal error (unhandled rejection)", { error }));
  const config = serverConfig(invocation.options);
  const server = await startServer(config);
  // Signal handlers before the lines that say kpass is up: whoever reads them may signal at once.
  const { shutdownGrace, shutdownDelay } = invocation.options;
  const shutdown = async () => {
    await server.stop(shutdownGrace, shutdownDelay);
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  let settings = invocation.options;
  process.on("SIGHUP", () => {
    if (invocation.configFile !== undefined) settings = reloadSettings(args, settings, server);
    server.reloadKeys().then(
      () => logger.info("kpass: encryption key file reloaded"),
      (error: Error) => logger.error(`encryption key file not reloaded, the old keys stay: ${error.message}`),
    );
    server.reloadCertificates().then(
      () => logger.info("kpass: serving certificate reloaded"),
      (error: Error) => logger.error(`serving certificate not reloaded, the old one stays: ${error.message}`),
    );
  });
  logger.info(`kpass ${KPASS_VERSION} listening on ${server.url}`, { data: config.dataDir, store: config.etcd ? "etcd" : "file" });
  if (server.metricsUrl) logger.info(`metrics (no authentication, loopback): ${server.metricsUrl}`);
  logger.info(`admin kubeconfig: ${server.adminKubeconfigPath}`);
  logger.info(`try: kubectl --kubeconfig ${server.adminKubeconfigPath} get clusters`);
  notifyReady(`listening on ${server.url}`);
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

const PASSES_PATH = "/apis/cluster.kpass.dev/v1beta1/passes";

function durationMs(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new Error(`${flag}: "${text}" is not a duration such as 30s or 5m`);
  return ms;
}

/** spec.expirationSeconds of a PassCertificateRequest from a --ttl-like flag (absent: the server's maximum). */
function expirationSeconds(text: string | undefined, flag: string): number | undefined {
  return text === undefined ? undefined : Math.floor(durationMs(text, flag) / 1000);
}

/** POSTs a PassCertificateRequest for pass `name`; returns the PEM certificate and its expiry. */
async function requestCertificate(values: { data?: string; "admin-kubeconfig"?: string }, name: string, csrPem: string, seconds: number | undefined): Promise<{ certPem: string; expirationTimestamp: string }> {
  const body = { apiVersion: "cluster.kpass.dev/v1beta1", kind: "PassCertificateRequest", spec: { request: Buffer.from(csrPem).toString("base64"), ...(seconds === undefined ? {} : { expirationSeconds: seconds }) } };
  const answer = (await expectOk(await (await clientFor(values)).request("POST", `${PASSES_PATH}/${encodeURIComponent(name)}/certificate`, body))) as { status: { certificate: string; expirationTimestamp: string } };
  return { certPem: Buffer.from(answer.status.certificate, "base64").toString("utf8"), expirationTimestamp: answer.status.expirationTimestamp };
}

async function kubeconfig(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...clientOptions, context: { type: "string" }, cert: { type: "boolean", default: false }, "cert-ttl": { type: "string" } } });
  const name = positionals[0];
  if (!name) throw new Error("usage: kpass kubeconfig PASS [--context NAME] [--cert [--cert-ttl 24h]]");
  if (values["cert-ttl"] !== undefined && !values.cert) throw new Error("--cert-ttl goes with --cert");
  // current-context is `kpass` unless --context names another context of the generated kubeconfig.
  const query = new URLSearchParams();
  if (values.context !== undefined) query.set("context", values.context);
  if (values.cert) query.set("credential", "none");
  const search = query.size > 0 ? `?${query}` : "";
  const response = await (await clientFor(values)).request("GET", `${PASSES_PATH}/${encodeURIComponent(name)}/kubeconfig${search}`);
  if (!response.ok) await expectOk(response);
  const text = await response.text();
  if (!values.cert) return void process.stdout.write(text);
  // A fresh key pair made here: only its CSR leaves this process, and kpass keeps no private key.
  const { newKeyAndCsr } = await import("./certificate-request.ts");
  const { keyPem, csrPem } = await newKeyAndCsr(name);
  const { certPem } = await requestCertificate(values, name, csrPem, expirationSeconds(values["cert-ttl"], "--cert-ttl"));
  const { parse, stringify } = await import("yaml");
  const config = parse(text) as { users: { user: Record<string, string> }[] };
  for (const entry of config.users) entry.user = { "client-certificate-data": Buffer.from(certPem).toString("base64"), "client-key-data": Buffer.from(keyPem).toString("base64") };
  process.stdout.write(stringify(config));
}

async function passCertificate(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...clientOptions, csr: { type: "string" }, ttl: { type: "string" } } });
  const name = positionals[0];
  if (!name || !values.csr) throw new Error("usage: kpass pass certificate NAME --csr FILE [--ttl 24h]");
  const { readFileSync } = await import("node:fs");
  const { certPem, expirationTimestamp } = await requestCertificate(values, name, readFileSync(values.csr, "utf8"), expirationSeconds(values.ttl, "--ttl"));
  console.error(`certificate for pass ${name} issued; it expires at ${expirationTimestamp}`);
  process.stdout.write(certPem);
}

async function apiservice(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: "string" },
      "ca-cert": { type: "string" },
      "service-namespace": { type: "string", default: "kpass" },
      "service-name": { type: "string", default: "kpass" },
      "service-port": { type: "string", default: "443" },
      "target-port": { type: "string", default: "8443" },
      user: { type: "string" },
    },
  });
  const { readFileSync } = await import("node:fs");
  // kpass's serving CA: its own (<data>/ca.crt), or the CA of a serving certificate from elsewhere.
  const caFile = values["ca-cert"] ?? join(dataDir(values.data), "ca.crt");
  let caPem: string;
  try {
    caPem = readFileSync(caFile, "utf8");
  } catch (error) {
    throw new Error(`cannot read kpass's serving CA ${caFile} (start kpass once, or name it with --ca-cert): ${(error as Error).message}`);
  }
  const port = (text: string, flag: string) => {
    if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw new Error(`${flag}: "${text}" is not a port`);
    return Number(text);
  };
  const { apiServiceManifests } = await import("./apiservice.ts");
  process.stdout.write(apiServiceManifests({
    caPem,
    serviceNamespace: values["service-namespace"],
    serviceName: values["service-name"],
    servicePort: port(values["service-port"], "--service-port"),
    targetPort: port(values["target-port"], "--target-port"),
    user: values.user,
  }));
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
      if (sub === "certificate") return passCertificate(rest);
      break;
    case "kubeconfig":
      return kubeconfig(argv.slice(1));
    case "apiservice":
      return apiservice(argv.slice(1));
    case "store":
      return storeCommand(sub, rest);
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
