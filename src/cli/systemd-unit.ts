/**
 * `kpass systemd-unit`: a hardened service unit for `kpass serve` on a bastion host. It takes the
 * serve flags too (from the one option table) and puts the ones given into ExecStart, so what the
 * unit runs is checked now rather than at the first start.
 */
import { isAbsolute, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { flagOf, optionsFromFlags, readConfigFile, SERVE_OPTIONS, serveFlagOptions, type ServeOptions } from "./serve-options.ts";

/** Beyond shutdown delay + grace: time for closing tunnels, the audit flush and exit before SIGKILL. */
const STOP_MARGIN_SECONDS = 5;

/** One ExecStart word, quoted as systemd.service(5) reads it: no word splitting, no %/$ expansion. */
function execWord(word: string): string {
  const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A path for ReadWritePaths= and the like: absolute, no whitespace (those lists split on it). */
function unitPath(path: string, what: string): string {
  const absolute = resolve(path);
  if (/\s/.test(absolute)) throw new Error(`${what}: "${absolute}" contains whitespace, which a unit file's path lists cannot hold`);
  return absolute.replace(/%/g, "%%");
}

export function systemdUnit(args: string[]): string {
  const { values } = parseArgs({
    args,
    options: {
      ...serveFlagOptions(),
      config: { type: "string" },
      user: { type: "string", default: "kpass" },
      group: { type: "string" },
      binary: { type: "string", default: "/usr/local/bin/kpass" },
    },
  });
  const user = values.user!;
  const group = values.group ?? user;
  for (const [flag, name] of [["--user", user], ["--group", group]] as const) {
    if (!/^[a-z_][a-z0-9_-]*$/i.test(name)) throw new Error(`${flag}: "${name}" is not a user or group name`);
    if (name === "root") throw new Error(`${flag}: kpass does not need root; name an unprivileged ${flag.slice(2)} (it binds ports < 1024 with CAP_NET_BIND_SERVICE)`);
  }
  const flags = optionsFromFlags(values);
  const configFile = values.config === undefined ? undefined : resolve(values.config);
  // The file decides the listen port (and so the capabilities) when no flag does.
  const file: Partial<ServeOptions> = configFile === undefined ? {} : readConfigFile(configFile);
  const dataDir = unitPath(flags.data ?? file.data ?? "/var/lib/kpass", "--data");
  if (!isAbsolute(values.binary!)) throw new Error(`--binary: "${values.binary}" must be an absolute path, as ExecStart= needs`);
  const binary = unitPath(values.binary!, "--binary");
  const listen = flags.listen ?? file.listen ?? optionsFromFlags({ listen: SERVE_OPTIONS.listen.default }).listen!;
  const privilegedPort = listen.port > 0 && listen.port < 1024;
  const defaults = optionsFromFlags({ "shutdown-grace": SERVE_OPTIONS.shutdownGrace.default, "shutdown-delay": SERVE_OPTIONS.shutdownDelay.default });
  const stopMs = (flags.shutdownGrace ?? file.shutdownGrace ?? defaults.shutdownGrace!) + (flags.shutdownDelay ?? file.shutdownDelay ?? defaults.shutdownDelay!);

  const serveArgs = ["serve", "--data", dataDir];
  if (configFile !== undefined) serveArgs.push("--config", configFile);
  for (const key of Object.keys(SERVE_OPTIONS)) {
    const flag = flagOf(key);
    const given = (values as Record<string, string | string[] | undefined>)[flag];
    if (key === "data" || given === undefined) continue;
    for (const value of typeof given === "string" ? [given] : given) serveArgs.push(`--${flag}`, value);
  }
  const underVarLib = relative("/var/lib", dataDir);
  const stateDirectory = underVarLib !== "" && !underVarLib.startsWith("..") && !isAbsolute(underVarLib) ? underVarLib : undefined;

  return `${[
    "# kpass as a systemd service. Written by `kpass systemd-unit`; install it as",
    "# /etc/systemd/system/kpass.service, then `systemctl daemon-reload && systemctl enable --now kpass`.",
    "[Unit]",
    "Description=kpass: one gateway to many Kubernetes clusters",
    // Listening on a configured address needs that address up, not just the network stack.
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "# kpass sends READY=1 to $NOTIFY_SOCKET once it listens and has written its admin kubeconfig.",
    "Type=notify",
    `ExecStart=${[binary, ...serveArgs].map(execWord).join(" ")}`,
    `User=${user}`,
    `Group=${group}`,
    "# SIGTERM ends in-flight work within the grace; systemd kills what is left after TimeoutStopSec.",
    "KillSignal=SIGTERM",
    `TimeoutStopSec=${Math.ceil(stopMs / 1000) + STOP_MARGIN_SECONDS}s`,
    "# SIGHUP: the serving certificate is read again; open connections keep theirs.",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=on-failure",
    "RestartSec=2s",
    "# Two descriptors per proxied watch or tunnel (client and cluster), so thousands of kubectl",
    "# watches need far more than the usual 1024.",
    "LimitNOFILE=1048576",
    "UMask=0077",
    "",
    "# The data directory (keys, objects with cluster credentials, audit log) is the only place kpass writes.",
    ...(stateDirectory === undefined
      ? [`# ${dataDir} must exist and belong to ${user}: install -d -o ${user} -g ${group} -m 0700 ${dataDir}`]
      : [`StateDirectory=${stateDirectory}`, "StateDirectoryMode=0700"]),
    `ReadWritePaths=${dataDir}`,
    "ProtectSystem=strict",
    "# Config, certificates and keys under /home are not readable: keep them in /etc/kpass.",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "NoNewPrivileges=yes",
    ...(privilegedPort
      ? [`# Port ${listen.port} is below 1024: binding it is the one privilege kpass keeps.`, "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE"]
      : ["CapabilityBoundingSet="]),
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "# IPv4/IPv6 to clients and clusters; AF_UNIX for the notify socket and name service lookups.",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "# Every system call kpass made serving TLS, REST and watches under strace is in this set.",
    "SystemCallFilter=@system-service",
    "SystemCallErrorNumber=EPERM",
    "# No MemoryDenyWriteExecute=: Bun's JavaScriptCore JIT maps 1 GiB writable+executable at start.",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
  ].join("\n")}\n`;
}
