/**
 * Moving an installation between stores (`kpass store copy`) and sealing everything again under the
 * key file's first key (`kpass store rotate-key`). Both work on stored values, not through a running
 * kpass: objects keep their names, uids and creation times (so issued tokens and certificates stay
 * good); the destination assigns new resourceVersions.
 */
import { join } from "node:path";
import type { StoredObject } from "../core/object.ts";
import type { KeyRing } from "../store/encryption.ts";
import type { EtcdClient } from "../store/etcd-client.ts";
import { FilePersistence } from "../store/file-persistence.ts";
import { FileSecrets, type SecretStore } from "../store/secrets.ts";
import { EtcdFeed, EtcdSecrets } from "../store/etcd-store.ts";
import { etcdClient, type EtcdStoreConfig } from "./storage.ts";

export const RESOURCES = ["clusters", "passes"] as const;
/** The secrets replicas share; a replica's serving certificate stays its own and is not copied. */
export const SHARED_SECRETS = ["ca.crt", "ca.key", "client-ca.crt", "client-ca.key", "token-signing.jwk"] as const;

export type StoreLocation = { kind: "file"; dir: string } | { kind: "etcd"; config: EtcdStoreConfig };

/** A store as plain objects and secrets, opened with one key ring. */
interface OpenedStore {
  objects(resource: string): Promise<StoredObject[]>;
  secrets(): SecretStore;
  /** Stores a copied object unless one of its name exists (then false). */
  add(resource: string, object: StoredObject, revision: number): Promise<boolean>;
  close(): void;
}

function openFile(dir: string, keys: KeyRing, reseal = true): OpenedStore {
  const persistence = new FilePersistence(join(dir, "objects"), keys, reseal);
  // The names already there, read once per resource (not once per copied object).
  const present = new Map<string, Promise<Set<string>>>();
  const names = (resource: string) => {
    let known = present.get(resource);
    if (!known) present.set(resource, (known = persistence.loadAll(resource).then((all) => new Set(all.map((o) => o.metadata.name)))));
    return known;
  };
  return {
    objects: (resource) => persistence.loadAll(resource),
    secrets: () => new FileSecrets(dir, keys, reseal),
    async add(resource, object, revision) {
      const known = await names(resource);
      if (known.has(object.metadata.name)) return false;
      await persistence.write(resource, { ...object, metadata: { ...object.metadata, resourceVersion: String(revision) } });
      known.add(object.metadata.name);
      return true;
    },
    close() {},
  };
}

function openEtcd(config: EtcdStoreConfig, keys: KeyRing): OpenedStore & { client: EtcdClient; feed: EtcdFeed } {
  const client = etcdClient(config);
  const feed = new EtcdFeed(client, config.prefix, keys);
  return {
    client,
    feed,
    async objects(resource) {
      const { kvs } = await client.range(`${feed.registry}${resource}/`, { prefix: true });
      return kvs.flatMap((kv) => feed.decode(kv, resource, kv.key.slice(`${feed.registry}${resource}/`.length)) ?? []);
    },
    secrets: () => new EtcdSecrets(client, config.prefix, keys),
    async add(resource, object) {
      const result = await client.create(feed.key(resource, object.metadata.name), feed.encode(resource, object));
      return result.ok;
    },
    close: () => feed.stop(),
  };
}

function openLocation(location: StoreLocation, keys: KeyRing, reseal = true): OpenedStore {
  return location.kind === "file" ? openFile(location.dir, keys, reseal) : openEtcd(location.config, keys);
}

export interface CopyReport {
  objects: Record<string, number>;
  secrets: number;
}

/**
 * Copies every object and shared secret. Nothing at the destination is overwritten: an object of
 * the same name, or a secret that differs (another installation's CA), stops the copy with an error
 * naming it — two installations are not merged by accident.
 */
export async function copyStore(from: StoreLocation, to: StoreLocation, keys: { from: KeyRing; to: KeyRing }): Promise<CopyReport> {
  // The source is only read: a file store is not sealed again under its key file as a side effect.
  const source = openLocation(from, keys.from, false);
  const destination = openLocation(to, keys.to);
  try {
    const report: CopyReport = { objects: {}, secrets: 0 };
    const sourceSecrets = source.secrets();
    const destinationSecrets = destination.secrets();
    for (const name of SHARED_SECRETS) {
      const value = await sourceSecrets.read(name);
      if (value === undefined) continue;
      const stored = await destinationSecrets.createIfAbsent(name, value);
      if (stored !== value) throw new Error(`the destination already holds a different ${name} (another installation?): nothing more copied`);
      report.secrets++;
    }
    for (const resource of RESOURCES) {
      report.objects[resource] = 0;
      for (const object of await source.objects(resource)) {
        if (!(await destination.add(resource, object, Number(object.metadata.resourceVersion) || 1))) throw new Error(`the destination already holds ${resource}/${object.metadata.name}: nothing more copied`);
        report.objects[resource]++;
      }
    }
    return report;
  } finally {
    source.close();
    destination.close();
  }
}

/**
 * Seals every stored value again under the ring's first key. Files are resealed as they are read;
 * etcd values are replaced by compare-and-swap, so a write made meanwhile by a replica is not lost
 * (it is sealed with whatever key that replica seals with, and a second run catches it).
 */
export async function rotateKeys(location: StoreLocation, keys: KeyRing, dataDir?: string): Promise<{ resealed: number; current: number }> {
  let resealed = 0;
  let current = 0;
  if (location.kind === "file") {
    // FilePersistence and FileSecrets seal again whatever they read under an older key (or in clear).
    const persistence = new FilePersistence(join(location.dir, "objects"), keys);
    const secrets = new FileSecrets(location.dir, keys);
    let total = 0;
    for (const resource of RESOURCES) total += (await persistence.loadAll(resource)).length;
    for (const name of [...SHARED_SECRETS, "serving.key"]) if ((await secrets.read(name)) !== undefined) total++;
    resealed = persistence.resealed + secrets.resealed;
    return { resealed, current: total - resealed };
  }
  const store = openEtcd(location.config, keys);
  try {
    for (const prefix of [store.feed.registry, `${location.config.prefix}secrets/`]) {
      const { kvs } = await store.client.range(prefix, { prefix: true });
      for (const kv of kvs) {
        const name = kv.key.slice(location.config.prefix.length).replace(/^registry\//, "");
        if (name.startsWith(".")) continue;
        const opened = keys.open(kv.value, name);
        if (!keys.stale(opened)) {
          current++;
          continue;
        }
        const result = await store.client.update(kv.key, keys.seal(opened.plain, name), kv.modRevision);
        if (result.ok) resealed++;
      }
    }
  } finally {
    store.close();
  }
  if (dataDir) {
    const local = new FileSecrets(dataDir, keys);
    await local.read("serving.key");
  }
  return { resealed, current };
}
