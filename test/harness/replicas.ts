/**
 * kpass replicas sharing one etcd, each with its own data directory, the way an operator runs them:
 * `kpass serve --store etcd --etcd-endpoints … --etcd-prefix … --encryption-key-file …`.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDataDir, startKpass, type KpassProcess } from "./kpass.ts";

/** A key file line `id:base64-of-32-bytes`, in a fresh directory. */
export function writeKeyFile(id = `k${randomBytes(3).toString("hex")}`): { file: string; id: string } {
  const dir = mkdtempSync(join(tmpdir(), "kpass-key-"));
  const file = join(dir, "encryption.key");
  writeFileSync(file, `${id}:${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  return { file, id };
}

/** A prefix no other test uses: `/kpass-<random>/`. */
export function randomPrefix(): string {
  return `/kpass-${randomBytes(4).toString("hex")}/`;
}

export function etcdArgs(endpoint: string, prefix: string, keyFile: string): string[] {
  return ["--store", "etcd", "--etcd-endpoints", endpoint, "--etcd-prefix", prefix, "--encryption-key-file", keyFile];
}

export interface ReplicaSet {
  prefix: string;
  keyFile: string;
  replicas: KpassProcess[];
  /** One more replica on the same prefix and key file. */
  add(extraArgs?: string[]): Promise<KpassProcess>;
  /** Stops every replica still running (SIGTERM by pid) and removes their data directories. */
  stop(): Promise<void>;
}

/**
 * Starts `count` replicas one after another (the first one creates the shared CA and signing key;
 * the others read them) or all at once, on a fresh prefix unless one is given.
 */
export async function startReplicas(endpoint: string, count: number, options: { prefix?: string; keyFile?: string; extraArgs?: string[]; together?: boolean } = {}): Promise<ReplicaSet> {
  const prefix = options.prefix ?? randomPrefix();
  const keyFile = options.keyFile ?? writeKeyFile().file;
  const replicas: KpassProcess[] = [];
  const add = async (extraArgs: string[] = options.extraArgs ?? []) => {
    const replica = await startKpass({ args: [...etcdArgs(endpoint, prefix, keyFile), ...extraArgs] });
    replicas.push(replica);
    return replica;
  };
  // together: all at the same moment, racing to create the CA, the keys and the admin pass.
  if (options.together) await Promise.all(Array.from({ length: count }, () => add()));
  else for (let i = 0; i < count; i++) await add();
  return {
    prefix,
    keyFile,
    replicas,
    add,
    async stop() {
      await Promise.all(
        replicas.map(async (r) => {
          try {
            process.kill(r.pid, 0);
            await r.stop();
          } catch {
            // Already gone (a test killed it).
            await r.exited;
          }
          removeDataDir(r.dataDir);
        }),
      );
    },
  };
}

/** The admin's API of `replica`, but with another replica's admin token (one signing key is shared). */
export function asAdminOf(first: KpassProcess, replica: KpassProcess): KpassProcess["api"] {
  return (method, path, body, init = {}) => replica.api(method, path, body, { ...init, token: init.token ?? first.adminToken });
}
