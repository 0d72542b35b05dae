/**
 * Every option of `kpass serve`, described once. The flag parser, the config file reader, the
 * usage text, `kpass config example` and `kpass config show` are all generated from SERVE_OPTIONS,
 * so an option added here exists everywhere at once and nowhere else needs to know its name.
 *
 * Config file keys are the camelCase of the flag (`--upstream-timeout` is `upstreamTimeout`), the
 * spelling of Kubernetes' own component configs. Precedence: a flag given on the command line, then
 * the option's environment variable (only `data` has one), then the config file, then the default.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, stringify, type Node } from "yaml";
import { parseDuration } from "../core/duration.ts";
import type { ServerConfig } from "../server/start.ts";

/** How one kind of value is read from a flag and from YAML, and written back to YAML. */
interface ValueType<T> {
  /** What the usage text shows after the flag. */
  metavar: string;
  /** Repeatable flag (`--san a --san b`); a YAML list in the file. */
  multiple?: boolean;
  /** A flag without a value (`--aggregated`); true/false in the file. */
  flag?: boolean;
  /** A path: relative ones in the config file are taken from the file's own directory. */
  path?: boolean;
  /** The flag's text (one string, or every occurrence when `multiple`) to the value; throws a message. */
  parse(text: string | string[]): T;
  /** A value as YAML parsed it to the option's value; throws a message. */
  fromYaml(value: unknown): T;
  /** The value as `config show` writes it, so that it reads back as the same value. */
  toYaml(value: T): unknown;
}

/** A flag's text for the types that take one string. */
function one(text: string | string[]): string {
  return typeof text === "string" ? text : text[text.length - 1]!;
}

function describe(value: unknown): string {
  if (value === null) return "nothing (remove the key to use the default)";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  return `the ${typeof value} ${String(value)}`;
}

function stringType(metavar: string, check: (text: string) => void = () => {}, extra: Partial<ValueType<string>> = {}): ValueType<string> {
  return {
    metavar,
    parse(text) {
      const value = one(text);
      check(value);
      return value;
    },
    fromYaml(value) {
      if (typeof value !== "string") throw new Error(`must be a string, not ${describe(value)}`);
      return this.parse(value);
    },
    toYaml: (value) => value,
    ...extra,
  };
}

const boolean: ValueType<boolean> = {
  metavar: "",
  flag: true,
  parse: (text) => (text as unknown) === true || text === "true",
  fromYaml(value) {
    if (typeof value !== "boolean") throw new Error(`must be true or false, not ${describe(value)}`);
    return value;
  },
  toYaml: (value) => value,
};

const path = stringType("FILE", (text) => {
  if (text === "") throw new Error("must not be empty");
}, { path: true });

const directory: ValueType<string> = { ...path, metavar: "DIR" };

const url = stringType("URL", (text) => {
  if (!/^https?:\/\//.test(text) || !URL.canParse(text)) throw new Error(`"${text}" is not a URL such as https://kpass.example.com:8443`);
});

const list: ValueType<string[]> = {
  metavar: "NAME",
  multiple: true,
  parse: (text) => (typeof text === "string" ? [text] : [...text]),
  fromYaml(value) {
    if (!Array.isArray(value)) throw new Error(`must be a list such as [kpass.example.com, 10.0.0.5], not ${describe(value)}`);
    value.forEach((item, i) => {
      if (typeof item !== "string") throw new Error(`item ${i + 1} must be a string, not ${describe(item)}`);
    });
    return value as string[];
  },
  toYaml: (value) => value,
};

const DURATION_UNITS = [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const;

/** Milliseconds as parseDuration reads them back: 90_000 → "1m30s", 1500 → "1.5s". */
function formatDuration(ms: number): string {
  let rest = ms;
  let text = "";
  for (const [unit, size] of DURATION_UNITS) {
    const n = unit === "s" ? rest / size : Math.floor(rest / size);
    if (n > 0) text += `${n}${unit}`;
    rest -= Math.floor(rest / size) * size;
  }
  return text || "0s";
}

const duration: ValueType<number> = {
  metavar: "DURATION",
  parse(text) {
    const value = one(text);
    const ms = parseDuration(value);
    if (ms === undefined) throw new Error(`"${value}" is not a duration such as 30s or 5m`);
    return ms;
  },
  fromYaml(value) {
    if (typeof value === "number") throw new Error(`${value} has no unit: write a duration such as ${value}s or ${value}m`);
    if (typeof value !== "string") throw new Error(`must be a duration such as 30s or 5m, not ${describe(value)}`);
    return this.parse(value);
  },
  toYaml: formatDuration,
};

const MAX_COUNT = 10_000;

const count: ValueType<number> = {
  metavar: "N",
  parse(text) {
    const value = one(text);
    if (!/^\d+$/.test(value) || Number(value) > MAX_COUNT) throw new Error(`"${value}" is not a number from 0 to ${MAX_COUNT}`);
    return Number(value);
  },
  fromYaml(value) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_COUNT) throw new Error(`must be a number from 0 to ${MAX_COUNT}, not ${describe(value)}`);
    return value;
  },
  toYaml: (value) => value,
};

const SIZE_UNITS = [["Gi", 1024 ** 3], ["Mi", 1024 ** 2], ["Ki", 1024]] as const;

const size: ValueType<number> = {
  metavar: "SIZE",
  parse(text) {
    const value = one(text);
    const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(value);
    if (!m) throw new Error(`"${value}" is not a size such as 100Mi`);
    return Number(m[1]) * (SIZE_UNITS.find(([unit]) => unit === m[2])?.[1] ?? 1);
  },
  fromYaml(value) {
    if (typeof value === "number" && Number.isInteger(value) && value >= 0) return value;
    if (typeof value !== "string") throw new Error(`must be a size such as 100Mi, not ${describe(value)}`);
    return this.parse(value);
  },
  toYaml(value) {
    const unit = SIZE_UNITS.find(([, n]) => value > 0 && value % n === 0);
    return unit ? `${value / unit[1]}${unit[0]}` : value;
  },
};

function oneOf<const V extends string>(...values: V[]): ValueType<V> {
  const type = stringType(values.join("|"), (text) => {
    if (!(values as string[]).includes(text)) throw new Error(`"${text}" must be one of ${values.join(", ")}`);
  });
  return type as ValueType<V>;
}

interface ListenAddress {
  hostname: string;
  port: number;
}

const listenAddress: ValueType<ListenAddress> = {
  metavar: "HOST:PORT",
  parse(text) {
    const value = one(text);
    const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(value);
    if (!m || Number(m[2]) > 65535) throw new Error(`"${value}" must be HOST:PORT`);
    return { hostname: m[1] || "0.0.0.0", port: Number(m[2]) };
  },
  fromYaml(value) {
    if (typeof value !== "string") throw new Error(`must be HOST:PORT such as 0.0.0.0:8443, not ${describe(value)}`);
    return this.parse(value);
  },
  toYaml: ({ hostname, port }) => `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`,
};

interface OptionSpec<T> {
  type: ValueType<T>;
  /** The default as a user would write it on the command line. */
  default?: string | readonly string[];
  /** What the default is when it is not one value (computed, or derived from another option). */
  defaultText?: string;
  /** A value `config example` shows, commented out, for an option without a default. */
  example?: string;
  /** Consulted after the flag and before the config file. */
  env?: string;
  /** One line, for the usage text and the example. */
  help: string;
}

/** The options of `kpass serve`; each key is the config file key, and its kebab-case is the flag. */
export const SERVE_OPTIONS = {
  data: { type: directory, env: "KPASS_DATA_DIR", defaultText: "$KPASS_DATA_DIR, else ~/.kpass", example: "/var/lib/kpass", help: "data directory: CA, keys, objects, audit log" },
  listen: { type: listenAddress, default: "127.0.0.1:8443", help: "address to serve HTTPS on (port 0: any free port)" },
  san: { type: list, default: [], help: "extra DNS names and IPs of the generated serving certificate" },
  externalUrl: { type: url, defaultText: "https://<listen address>", example: "https://kpass.example.com:8443", help: "server URL written into kubeconfigs" },
  tlsCert: { type: path, defaultText: "a certificate kpass issues from its own CA", example: "/etc/kpass/tls.crt", help: "serving certificate (PEM) to use instead of kpass's own; needs tlsKey" },
  tlsKey: { type: path, defaultText: "the key of kpass's own certificate", example: "/etc/kpass/tls.key", help: "private key (PEM) of tlsCert" },
  caCert: { type: path, defaultText: "kpass's own CA, or none with tlsCert", example: "/etc/kpass/ca.crt", help: "CA (PEM) written into kubeconfigs, for a tlsCert from another CA" },
  probeInterval: { type: duration, default: "60s", help: "how often each cluster's health and version are probed" },
  upstreamTimeout: { type: duration, default: "60s", help: "longest wait for a cluster's response head when a request names no ?timeout= (then 504)" },
  connectTimeout: { type: duration, defaultText: "10s, or upstreamTimeout when shorter", example: "10s", help: "TCP connect + TLS handshake budget toward a cluster (then 503)" },
  idleTimeout: { type: duration, default: "2m", help: "idle client keep-alive connections are closed after this" },
  maxStreamsPerPass: { type: count, default: "1000", help: "watches and tunnels one pass may hold open (0: unbounded); beyond it 429" },
  audit: { type: oneOf("file", "stdout", "both", "off"), default: "file", help: "audit log to <data>/audit.log, stdout, both, or off" },
  auditMaxSize: { type: size, default: "100Mi", help: "audit.log is rotated when it reaches this size" },
  // Like kube-apiserver's --audit-log-maxbackup.
  auditMaxBackups: { type: count, default: "10", help: "rotated audit logs kept, audit.log.1 … audit.log.N (0: all)" },
  maxCertTtl: { type: duration, default: "24h", help: "longest lifetime of a pass client certificate kpass issues" },
  shutdownGrace: { type: duration, default: "30s", help: "on SIGTERM, how long requests in flight may take before they are cut" },
  // Like kube-apiserver's --shutdown-delay-duration.
  // Plain-HTTP /metrics without authentication, loopback only.
  metricsListen: { type: listenAddress, defaultText: "none", example: "127.0.0.1:9090", help: "also serve /metrics over plain HTTP without authentication on this loopback address" },
  // `off` exists to measure what metrics cost.
  metrics: { type: oneOf("on", "off"), default: "on", help: "record metrics (off only to measure their cost)" },
  logFormat: { type: oneOf("text", "json"), default: "text", help: "kpass's own log on stderr: text, or one JSON object per line" },
  logLevel: { type: oneOf("debug", "info", "warn", "error"), default: "info", help: "least severe log lines written" },
  shutdownDelay: { type: duration, default: "0s", help: "on SIGTERM, how long kpass keeps serving, unready, before it refuses new connections" },
  // Aggregated mode (an extension API server behind the host's aggregator); see `kpass apiservice`.
  aggregated: { type: boolean, default: "false", help: "also serve as an extension API server of the host kube-apiserver (needs hostKubeconfig)" },
  hostKubeconfig: { type: path, defaultText: "none", example: "/etc/kpass/host.kubeconfig", help: "kubeconfig of the host kube-apiserver kpass extends in aggregated mode" },
  hostRefresh: { type: duration, default: "30s", help: "aggregated mode: how often the host's extension-apiserver-authentication ConfigMap is read again" },
  // Scale-out: replicas sharing one etcd; the file store stays the default.
  store: { type: oneOf("file", "etcd"), default: "file", help: "where objects and shared secrets live: files in the data directory, or etcd shared by replicas" },
  etcdEndpoints: { type: list, default: [], example: "https://10.0.0.5:2379", help: "etcd client URLs (comma-separated or repeated), for store etcd" },
  etcdPrefix: { type: stringType("PREFIX", (text) => {
    if (!text.startsWith("/") || !text.endsWith("/")) throw new Error(`"${text}" must start and end with /`);
  }), default: "/kpass/", help: "key prefix of kpass's data in etcd" },
  etcdCafile: { type: path, defaultText: "the system's roots", example: "/etc/kpass/etcd-ca.crt", help: "CA (PEM) of etcd's serving certificates" },
  etcdCertfile: { type: path, defaultText: "none", example: "/etc/kpass/etcd-client.crt", help: "client certificate (PEM) kpass presents to etcd; needs etcdKeyfile" },
  etcdKeyfile: { type: path, defaultText: "none", example: "/etc/kpass/etcd-client.key", help: "private key (PEM) of etcdCertfile" },
  encryptionKeyFile: { type: path, defaultText: "<data>/encryption.key, created on first start (store file only)", example: "/etc/kpass/encryption.key", help: "AES-256-GCM keys sealing every stored secret, one `id:base64` a line; the first seals" },
} satisfies Record<string, OptionSpec<unknown>>;

type Options = typeof SERVE_OPTIONS;
export type OptionKey = keyof Options;
type ValueOf<S> = S extends { type: ValueType<infer T> } ? (S extends { default: unknown } ? T : T | undefined) : never;
/** What `kpass serve` runs with, once flags, environment, config file and defaults are merged. */
export type ServeOptions = { -readonly [K in OptionKey]: ValueOf<Options[K]> };

const KEYS = Object.keys(SERVE_OPTIONS) as OptionKey[];
const spec = (key: OptionKey): OptionSpec<unknown> => SERVE_OPTIONS[key] as OptionSpec<unknown>;

/** `upstreamTimeout` → `upstream-timeout`. */
export function flagOf(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** A config file's problems, each `FILE:LINE:COLUMN: message`, one a line. */
export class ConfigFileError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

function suggestion(key: string): string {
  const folded = key.toLowerCase().replace(/[-_]/g, "");
  const near = KEYS.find((k) => k.toLowerCase() === folded) ?? KEYS.find((k) => distance(k.toLowerCase(), key.toLowerCase()) <= 2);
  if (near) return ` (did you mean "${near}"?)`;
  if (key === "config") return " (a config file cannot name another)";
  return "";
}

/** The options a config file sets, read with positions so every problem names its line. */
export function readConfigFile(file: string, text = readFileSync(file, "utf8")): Partial<ServeOptions> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (node: Node | { range?: [number, number, number?] | null } | null | undefined, fallback = 0) => {
    const { line, col } = lines.linePos(node?.range?.[0] ?? fallback);
    return `${file}:${line}:${col}`;
  };
  const problems = doc.errors.map((e) => {
    const { line, col } = lines.linePos(e.pos[0]);
    return `${file}:${line}:${col}: ${e.message.split("\n")[0]}`;
  });
  if (problems.length > 0) throw new ConfigFileError(problems);
  const found: Partial<Record<OptionKey, unknown>> = {};
  const root = doc.contents;
  // An empty file (or one of only comments) sets nothing.
  if (root === null || (isScalar(root) && root.value === null)) return {};
  if (!isMap(root)) throw new ConfigFileError([`${at(root)}: the config file must be a mapping of keys such as "listen: 0.0.0.0:8443", not ${isSeq(root) ? "a list" : "a single value"}`]);
  for (const pair of root.items) {
    const keyNode = pair.key as Node | null;
    const key = isScalar(keyNode) ? keyNode.value : undefined;
    if (typeof key !== "string") {
      problems.push(`${at(keyNode)}: keys must be option names such as listen`);
      continue;
    }
    if (!KEYS.includes(key as OptionKey)) {
      problems.push(`${at(keyNode)}: unknown key "${key}"${suggestion(key)}`);
      continue;
    }
    const valueNode = pair.value as Node | null;
    try {
      let value = spec(key as OptionKey).type.fromYaml(valueNode === null ? null : valueNode.toJSON());
      if (spec(key as OptionKey).type.path) value = resolve(dirname(resolve(file)), value as string);
      found[key as OptionKey] = value;
    } catch (error) {
      // An empty value has no text of its own to point at; its key does.
      const empty = valueNode === null || (isScalar(valueNode) && valueNode.value === null);
      problems.push(`${at(empty ? keyNode : valueNode)}: ${key}: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigFileError(problems);
  return found as Partial<ServeOptions>;
}

/** parseArgs options for every serve flag, none with a default: a value present was given. */
export function serveFlagOptions(): Record<string, { type: "string" | "boolean"; multiple?: boolean }> {
  return Object.fromEntries(KEYS.map((key) => [flagOf(key), { type: spec(key).type.flag ? ("boolean" as const) : ("string" as const), ...(spec(key).type.multiple ? { multiple: true } : {}) }]));
}

/** The options given as flags (already parsed by parseArgs), validated; absent ones left out. */
export function optionsFromFlags(values: Record<string, unknown>): Partial<ServeOptions> {
  const found: Partial<Record<OptionKey, unknown>> = {};
  for (const key of KEYS) {
    const text = values[flagOf(key)] as string | string[] | undefined;
    if (text === undefined) continue;
    try {
      found[key] = spec(key).type.parse(text);
    } catch (error) {
      throw new Error(`--${flagOf(key)}: ${(error as Error).message}`);
    }
  }
  return found as Partial<ServeOptions>;
}

/** Flags over environment over config file over defaults. */
export function mergeOptions(flags: Partial<ServeOptions>, file: Partial<ServeOptions>, env: Record<string, string | undefined> = process.env): ServeOptions {
  const merged: Partial<Record<OptionKey, unknown>> = {};
  for (const key of KEYS) {
    const { env: variable, default: fallback, type } = spec(key);
    const fromEnv = variable === undefined || env[variable] === undefined || env[variable] === "" ? undefined : type.parse(env[variable]!);
    merged[key] = flags[key] ?? fromEnv ?? file[key] ?? (fallback === undefined ? undefined : type.parse(fallback as string | string[]));
  }
  return merged as ServeOptions;
}

export interface ServeInvocation {
  options: ServeOptions;
  configFile?: string;
  help: boolean;
}

/** `kpass serve`'s arguments to the options it runs with. */
export function parseServeArgs(args: string[], env: Record<string, string | undefined> = process.env): ServeInvocation {
  const { values } = parseArgs({ args, options: { ...serveFlagOptions(), config: { type: "string" }, help: { type: "boolean", short: "h" } } });
  const flags = optionsFromFlags(values);
  const configFile = values.config;
  let file: Partial<ServeOptions> = {};
  if (configFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(configFile, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : (error as Error).message;
      throw new Error(`--config: cannot read ${configFile}: ${reason}`);
    }
    file = readConfigFile(configFile, text);
  }
  return { options: mergeOptions(flags, file, env), configFile, help: values.help === true };
}

/** The data directory when nothing names one. */
export function defaultDataDir(): string {
  return join(homedir(), ".kpass");
}

function requireHostKubeconfig(file: string | undefined): string {
  if (!file) throw new Error("--aggregated needs --host-kubeconfig: the kubeconfig of the host kube-apiserver");
  return file;
}

function etcdConfig(o: ServeOptions): NonNullable<ServerConfig["etcd"]> {
  const endpoints = o.etcdEndpoints.flatMap((e) => e.split(",")).map((e) => e.trim()).filter(Boolean);
  if (endpoints.length === 0) throw new Error("--store etcd needs --etcd-endpoints: the client URLs of etcd");
  for (const endpoint of endpoints) if (!/^https?:\/\/[^/]+\/?$/.test(endpoint)) throw new Error(`--etcd-endpoints: "${endpoint}" is not a URL such as https://10.0.0.5:2379`);
  if (!o.encryptionKeyFile) throw new Error("--store etcd needs --encryption-key-file: secrets in a shared store are sealed with a key every replica holds, and kpass does not keep it in etcd beside them");
  if (Boolean(o.etcdCertfile) !== Boolean(o.etcdKeyfile)) throw new Error("--etcd-certfile and --etcd-keyfile must be given together");
  return { endpoints, prefix: o.etcdPrefix, caFile: o.etcdCafile, certFile: o.etcdCertfile, keyFile: o.etcdKeyfile };
}

/** What startServer needs, from the merged options. */
export function serverConfig(o: ServeOptions): ServerConfig {
  return {
    dataDir: o.data ?? defaultDataDir(),
    ...o.listen,
    sans: o.san,
    externalUrl: o.externalUrl,
    tlsCertFile: o.tlsCert,
    tlsKeyFile: o.tlsKey,
    caFile: o.caCert,
    probeIntervalMs: o.probeInterval,
    upstreamTimeoutMs: o.upstreamTimeout,
    connectTimeoutMs: o.connectTimeout,
    idleTimeoutSeconds: o.idleTimeout / 1000,
    maxStreamsPerPass: o.maxStreamsPerPass,
    maxCertTtlMs: o.maxCertTtl,
    metrics: o.metrics === "on",
    metricsListen: o.metricsListen,
    ...(o.aggregated ? { aggregated: { hostKubeconfig: requireHostKubeconfig(o.hostKubeconfig), refreshMs: o.hostRefresh } } : {}),
    encryptionKeyFile: o.encryptionKeyFile,
    ...(o.store === "etcd" ? { etcd: etcdConfig(o) } : {}),
    audit: { file: o.audit === "file" || o.audit === "both", stdout: o.audit === "stdout" || o.audit === "both", maxBytes: o.auditMaxSize, maxBackups: o.auditMaxBackups },
  };
}

/** `[--listen HOST:PORT] [--san NAME]...`, wrapped to `width` with `indent` on continuation lines. */
export function serveSynopsis(indent: string, width = 100): string {
  const words = ["[--config FILE]", ...KEYS.map((key) => `[--${flagOf(key)}${spec(key).type.flag ? "" : ` ${spec(key).type.metavar}`}]${spec(key).type.multiple ? "..." : ""}`)];
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line && indent.length + line.length + word.length + 1 > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${indent}`);
}

function defaultOf(key: OptionKey): string {
  const { default: fallback, defaultText } = spec(key);
  if (defaultText !== undefined) return defaultText;
  if (Array.isArray(fallback)) return fallback.length === 0 ? "none" : fallback.join(", ");
  return String(fallback);
}

/** `kpass serve --help`: every flag, its config key, default and meaning. */
export function serveHelp(): string {
  const rows: [string, string][] = [["--config FILE", "YAML config file; every other flag has a key in it, and flags override it"]];
  for (const key of KEYS) {
    const { type, help } = spec(key);
    rows.push([`--${flagOf(key)} ${type.metavar}${type.multiple ? " (repeatable)" : ""}`, `${help} (key ${key}; default ${defaultOf(key)})`]);
  }
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return [
    "Usage: kpass serve [--config FILE] [flags]",
    "",
    "Config file keys are the flags in camelCase (--upstream-timeout is upstreamTimeout); relative",
    "paths in the file are taken from the file's directory. A flag overrides the file, and",
    "$KPASS_DATA_DIR overrides its data. `kpass config example` prints a file with every key.",
    "",
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`),
  ].join("\n");
}

/** One YAML line `key: value` as the yaml package writes the value, so that it reads back. */
function yamlLine(key: string, value: unknown): string {
  return `${key}: ${stringify(value, { flowCollectionPadding: false, collectionStyle: "flow" }).trimEnd()}`;
}

/**
 * `kpass config example`: every key with its default, and a comment saying what it does. Keys
 * without a single default value are written commented out, with an example value to uncomment.
 */
export function configExample(): string {
  const out = [
    "# kpass serve --config FILE",
    "# Every key is a flag of `kpass serve` in camelCase; a flag given on the command line overrides",
    "# the key here. Relative paths are taken from this file's directory. Unknown keys are an error.",
  ];
  for (const key of KEYS) {
    const { type, default: fallback, example, help } = spec(key);
    out.push("", `# ${help}.`);
    if (fallback !== undefined) {
      // Written as the table spells it (60s, not 1m), where YAML reads that spelling as a string too.
      const value = type.toYaml(type.parse(fallback as string | string[]));
      out.push(yamlLine(key, typeof value === "string" ? fallback : value));
    } else {
      out.push(`# Default: ${defaultOf(key)}.`, `# ${yamlLine(key, type.toYaml(type.parse(example ?? "")))}`);
    }
  }
  return `${out.join("\n")}\n`;
}

/** `kpass config show`: the options in force, as a config file that reads back to the same options. */
export function showOptions(o: ServeOptions): string {
  const lines = KEYS.flatMap((key) => (o[key] === undefined ? [] : [yamlLine(key, spec(key).type.toYaml(o[key] as never))]));
  return `${lines.join("\n")}\n`;
}
