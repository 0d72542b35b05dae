/**
 * Where kpass keeps its objects and secrets: files in the data directory (one kpass), or etcd
 * (replicas sharing everything). Either way every value but a certificate is sealed with the
 * encryption key ring.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Cluster } from "../core/cluster.ts";
import type { Pass } from "../core/pass.ts";
import { KeyRing } from "../store/encryption.ts";
import { FilePersistence } from "../store/file-persistence.ts";
import { LocalBackend, RevisionClock } from "../store/local-backend.ts";
import { ObjectStore } from "../store/object-store.ts";
import { FileSecrets, type SecretStore } from "../store/secrets.ts";
import type { StoreHealth } from "../store/backend.ts";
import { EtcdClient } from "../store/etcd-client.ts";
import { EtcdLeader } from "../store/etcd-leader.ts";
import { EtcdFeed, EtcdSecrets } from "../store/etcd-store.ts";

export interface EtcdStoreConfig {
  endpoints: string[];
  prefix: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface StorageConfig {
  dataDir: string;
  /** The key file; for the file store it defaults to `<data>/encryption.key`, created on first start. */
  encryptionKeyFile?: string;
  etcd?: EtcdStoreConfig;
}

export interface Storage {
  clusters: ObjectStore<Cluster>;
  passes: ObjectStore<Pass>;
  /** Secrets every replica shares: the CAs, the token-signing key. */
  shared: SecretStore;
  /** This replica's own: its serving certificate. */
  local: SecretStore;
  keys: KeyRing;
  /** "file" or "etcd", for the log line and /readyz. */
  kind: "file" | "etcd";
  health(): StoreHealth;
  /**
   * Runs `role` on one replica at a time (the health prober): at once with the file store, under an
   * etcd lease with etcd.
   */
  elect(name: string, role: { start(): void; stop(): void }): { start(): void; stop(): Promise<void> };
  stop(): void;
}

export const DEFAULT_KEY_FILE = "encryption.key";

export async function openKeyRing(config: StorageConfig): Promise<KeyRing> {
  return config.encryptionKeyFile ? KeyRing.fromFile(config.encryptionKeyFile) : KeyRing.fromFileOrNew(join(config.dataDir, DEFAULT_KEY_FILE));
}

export function etcdClient(config: EtcdStoreConfig): EtcdClient {
  const read = (file?: string) => (file ? readFileSync(file, "utf8") : undefined);
  return new EtcdClient({ endpoints: config.endpoints, caPem: read(config.caFile), certPem: read(config.certFile), keyPem: read(config.keyFile) });
}

async function openEtcd(config: StorageConfig & { etcd: EtcdStoreConfig }, keys: KeyRing, local: FileSecrets): Promise<Storage> {
  const client = etcdClient(config.etcd);
  const feed = new EtcdFeed(client, config.etcd.prefix, keys);
  const clusters = new ObjectStore<Cluster>("clusters", feed.backend("clusters"));
  const passes = new ObjectStore<Pass>("passes", feed.backend("passes"));
  try {
    await feed.start();
  } catch (error) {
    throw new Error(`--store etcd: cannot read ${config.etcd.prefix} from ${config.etcd.endpoints.join(",")}: ${(error as Error).message}`);
  }
  await clusters.load();
  await passes.load();
  const identity = `${hostname()}/${process.pid}/${crypto.randomUUID()}`;
  return {
    clusters,
    passes,
    shared: new EtcdSecrets(client, config.etcd.prefix, keys),
    local,
    keys,
    kind: "etcd",
    health: () => feed.health(),
    elect: (name, role) => new EtcdLeader(client, `${config.etcd.prefix}leader/${name}`, identity, role),
    stop: () => feed.stop(),
  };
}

export async function openStorage(config: StorageConfig): Promise<Storage> {
  if (config.etcd && !config.encryptionKeyFile) throw new Error("--store etcd needs --encryption-key-file");
  const keys = await openKeyRing(config);
  const local = new FileSecrets(config.dataDir, keys);
  if (config.etcd) return openEtcd({ ...config, etcd: config.etcd }, keys, local);
  const persistence = new FilePersistence(join(config.dataDir, "objects"), keys);
  const clock = new RevisionClock();
  const clusters = new ObjectStore<Cluster>("clusters", new LocalBackend("clusters", clock, persistence));
  const passes = new ObjectStore<Pass>("passes", new LocalBackend("passes", clock, persistence));
  await clusters.load();
  await passes.load();
  return {
    clusters,
    passes,
    shared: local,
    local,
    keys,
    kind: "file",
    health: () => ({ writable: true }),
    elect: (_name, role) => ({ start: () => role.start(), stop: async () => role.stop() }),
    stop: () => {},
  };
}
