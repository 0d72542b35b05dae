/**
 * `kpass store …`: the stored data itself, without a running kpass.
 *
 *   kpass store copy --from file:/var/lib/kpass --to etcd:https://10.0.0.5:2379 [serve flags]
 *   kpass store rotate-key [--new-key] [serve flags]
 *   kpass store new-key
 *
 * The serve flags (or --config) say where the store is and which key file seals it, exactly as
 * `kpass serve` reads them, so the command run against a store is the one that serves it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { KeyRing, newKeyLine, prependKey } from "../store/encryption.ts";
import { DEFAULT_KEY_FILE, openKeyRing, type EtcdStoreConfig } from "../server/storage.ts";
import { copyStore, rotateKeys, type StoreLocation } from "../server/store-transfer.ts";
import { parseServeArgs, serverConfig } from "./serve-options.ts";

export const STORE_USAGE = `  kpass store copy --from file:DIR|etcd:URL[,URL] --to file:DIR|etcd:URL[,URL] [serve flags]
  kpass store rotate-key [--new-key] [serve flags]   (seal every stored value under the key file's first key)
  kpass store new-key                                (print a fresh key line for an encryption key file)`;

/** `--name value` or `--name=value` taken out of `args`; the rest are serve flags. */
function take(args: string[], name: string, flag = false): { value?: string; rest: string[] } {
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === `--${name}`) {
      value = flag ? "true" : args[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    } else if (arg.startsWith(`--${name}=`)) value = arg.slice(name.length + 3);
    else rest.push(arg);
  }
  return { value, rest };
}

function location(spec: string | undefined, flag: string, etcd: Omit<EtcdStoreConfig, "endpoints">): StoreLocation {
  if (!spec) throw new Error(`--${flag} is required: file:DIR or etcd:URL[,URL]`);
  if (spec.startsWith("file:") && spec.length > 5) return { kind: "file", dir: spec.slice(5) };
  if (spec.startsWith("etcd:")) {
    const endpoints = spec.slice(5).split(",").map((e) => e.trim()).filter(Boolean);
    if (endpoints.length === 0 || endpoints.some((e) => !/^https?:\/\/[^/]+\/?$/.test(e))) throw new Error(`--${flag}: "${spec}" must be etcd:URL[,URL] such as etcd:https://10.0.0.5:2379`);
    return { kind: "etcd", config: { ...etcd, endpoints } };
  }
  throw new Error(`--${flag}: "${spec}" must be file:DIR or etcd:URL[,URL]`);
}

/** The ring that opens a store: its own key file for a file store when it has one, else the ring given. */
async function ringFor(where: StoreLocation, fallback: KeyRing | undefined, explicit?: string): Promise<KeyRing> {
  if (explicit) return KeyRing.fromFile(explicit);
  if (where.kind === "file" && existsSync(join(where.dir, DEFAULT_KEY_FILE))) return KeyRing.fromFile(join(where.dir, DEFAULT_KEY_FILE));
  if (fallback) return fallback;
  if (where.kind === "file") return KeyRing.fromFileOrNew(join(where.dir, DEFAULT_KEY_FILE));
  throw new Error("etcd needs --encryption-key-file: the key that seals what kpass stores there");
}

async function copy(args: string[]): Promise<void> {
  const from = take(args, "from");
  const to = take(from.rest, "to");
  const fromKey = take(to.rest, "from-encryption-key-file");
  const options = parseServeArgs(fromKey.rest).options;
  const etcd = { prefix: options.etcdPrefix, caFile: options.etcdCafile, certFile: options.etcdCertfile, keyFile: options.etcdKeyfile };
  const source = location(from.value, "from", etcd);
  const destination = location(to.value, "to", etcd);
  const destinationKeys = await ringFor(destination, options.encryptionKeyFile ? await KeyRing.fromFile(options.encryptionKeyFile) : undefined, options.encryptionKeyFile);
  const sourceKeys = await ringFor(source, destinationKeys, fromKey.value);
  const report = await copyStore(source, destination, { from: sourceKeys, to: destinationKeys });
  const counts = Object.entries(report.objects).map(([resource, n]) => `${n} ${resource}`).join(", ");
  console.log(`copied ${counts} and ${report.secrets} shared secrets (CAs, keys) to ${to.value}; sealed under key "${destinationKeys.primary.id}"`);
}

async function rotateKey(args: string[]): Promise<void> {
  const fresh = take(args, "new-key", true);
  const options = parseServeArgs(fresh.rest).options;
  const config = serverConfig(options);
  const keyFile = config.encryptionKeyFile ?? join(config.dataDir, DEFAULT_KEY_FILE);
  if (fresh.value) {
    await prependKey(keyFile, newKeyLine());
    console.log(`${keyFile}: a new first key; the keys after it still open older values`);
  }
  const keys = await openKeyRing(config);
  const where: StoreLocation = config.etcd ? { kind: "etcd", config: config.etcd } : { kind: "file", dir: config.dataDir };
  const { resealed, current } = await rotateKeys(where, keys, config.dataDir);
  console.log(`sealed under key "${keys.primary.id}": ${resealed} value(s) sealed again, ${current} already were`);
  console.log("send SIGHUP to (or restart) every kpass using this key file so that new writes use the new key too");
}

export async function storeCommand(sub: string | undefined, args: string[]): Promise<void> {
  switch (sub) {
    case "copy":
      return copy(args);
    case "rotate-key":
      return rotateKey(args);
    case "new-key":
      console.log(newKeyLine());
      return;
  }
  throw new Error(`unknown command "store ${sub ?? ""}"\n\n${STORE_USAGE}`);
}
