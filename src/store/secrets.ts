/**
 * Named secrets — the CAs, their keys, the token-signing key — kept beside the objects: in the
 * data directory for one kpass, in etcd when replicas share them. The first replica to start
 * creates each one; every other reads what it created.
 */
import { writeFileAtomic } from "./atomic-file.ts";
import { open, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { KeyRing } from "./encryption.ts";

export interface SecretStore {
  /** The value, or undefined when nothing of that name is stored. */
  read(name: string): Promise<string | undefined>;
  /** Stores `value` unless `name` exists; resolves to what is stored then (another replica's, if it won). */
  createIfAbsent(name: string, value: string): Promise<string>;
  /** Stores `value` whatever was there. */
  write(name: string, value: string): Promise<void>;
}

const SECRET_NAME = /^[a-z0-9][a-z0-9.-]{0,63}$/;

export function checkSecretName(name: string): string {
  if (!SECRET_NAME.test(name)) throw new Error(`refusing to store a secret named ${JSON.stringify(name.slice(0, 80))}`);
  return name;
}

/** A certificate is public: it stays readable (`curl --cacert ca.crt`); everything else is sealed. */
export function isPublic(name: string): boolean {
  return name.endsWith(".crt");
}

/** Secrets as files of the data directory (0600), sealed with the key ring when there is one. */
export class FileSecrets implements SecretStore {
  /** Secrets sealed again as they were read (clear, or under an older key), since this was made. */
  resealed = 0;

  constructor(
    private readonly dir: string,
    private readonly keys?: KeyRing,
    /** False: read only, nothing sealed again (the source of a `store copy`). */
    private readonly reseal = true,
  ) {}

  async read(name: string): Promise<string | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(join(this.dir, checkSecretName(name))));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    if (!this.keys || isPublic(name)) return new TextDecoder().decode(bytes);
    const opened = this.keys.open(bytes, `secrets/${name}`);
    const text = new TextDecoder().decode(opened.plain);
    // A key written in clear before encryption was on, or under a retired key: sealed again now.
    if (this.reseal && this.keys.stale(opened)) {
      await this.write(name, text);
      this.resealed++;
    }
    return text;
  }

  async createIfAbsent(name: string, value: string): Promise<string> {
    const path = join(this.dir, checkSecretName(name));
    const handle = await open(path, "wx", isPublic(name) ? 0o644 : 0o600).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "EEXIST") return undefined;
      throw error;
    });
    if (!handle) return (await this.read(name))!;
    try {
      await handle.writeFile(this.encode(name, value));
      await handle.sync();
    } catch (error) {
      await handle.close();
      await unlink(path).catch(() => {});
      throw error;
    }
    await handle.close();
    return value;
  }

  async write(name: string, value: string): Promise<void> {
    await writeFileAtomic(join(this.dir, checkSecretName(name)), this.encode(name, value), { mode: isPublic(name) ? 0o644 : 0o600 });
  }

  private encode(name: string, value: string): Uint8Array {
    const bytes = new TextEncoder().encode(value);
    return this.keys && !isPublic(name) ? this.keys.seal(bytes, `secrets/${name}`) : bytes;
  }
}

export interface PemPair {
  certPem: string;
  keyPem: string;
}

const PAIR_WAIT_MS = 10_000;

/**
 * A certificate and its key, created once for all replicas. The key decides: whoever stores it
 * first also stores the certificate; a replica that lost the race waits for that certificate
 * rather than pairing the winner's key with its own.
 */
export async function loadOrCreatePair(secrets: SecretStore, names: { cert: string; key: string }, create: () => Promise<PemPair>): Promise<PemPair> {
  const [certPem, keyPem] = await Promise.all([secrets.read(names.cert), secrets.read(names.key)]);
  if (certPem && keyPem) return { certPem, keyPem };
  if (certPem) throw new Error(`${names.key} is missing: ${names.cert} needs its key`);
  if (!keyPem) {
    const pair = await create();
    const stored = await secrets.createIfAbsent(names.key, pair.keyPem);
    if (stored === pair.keyPem) {
      if ((await secrets.createIfAbsent(names.cert, pair.certPem)) !== pair.certPem) throw new Error(`${names.cert} was stored by someone else for a key that is not its own`);
      return pair;
    }
  }
  const deadline = Date.now() + PAIR_WAIT_MS;
  for (;;) {
    const [cert, key] = await Promise.all([secrets.read(names.cert), secrets.read(names.key)]);
    if (cert && key) return { certPem: cert, keyPem: key };
    if (Date.now() > deadline) throw new Error(`${names.cert} is missing: ${names.key} needs its certificate`);
    await Bun.sleep(100);
  }
}
