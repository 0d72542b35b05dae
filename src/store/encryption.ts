/**
 * Secrets at rest: every value kpass stores (objects, the CA and signing keys) is sealed with
 * AES-256-GCM under a key from the key file, in an envelope that names the key:
 *
 *   "kpass:enc:aesgcm:v1:" <key id> ":" <12-byte nonce> <ciphertext> <16-byte tag>
 *
 * The key id lets keys be rotated: the key file lists several, the first seals, all of them open.
 * The additional data is the value's storage name (`clusters/prod`), so a sealed value moved to
 * another name (one Cluster's credentials pasted over another's) does not open.
 */
import { writeFileAtomic } from "./atomic-file.ts";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";

const PREFIX = "kpass:enc:aesgcm:v1:";
const PREFIX_BYTES = new TextEncoder().encode(PREFIX);
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;

export interface EncryptionKey {
  id: string;
  key: Uint8Array;
}

/** What an opened value was: sealed under `keyId`, or stored in clear (written before encryption was on). */
export interface Opened {
  plain: Uint8Array;
  keyId?: string;
}

/**
 * A key file: one key per line, `[<id>:]<base64 of 32 bytes>`; `#` starts a comment. A key without
 * an id is named by its digest, so `head -c 32 /dev/urandom | base64 > key` is a valid file.
 */
export function parseKeyFile(text: string, source = "the encryption key file"): EncryptionKey[] {
  const keys: EncryptionKey[] = [];
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const colon = line.lastIndexOf(":");
    const id = colon > 0 ? line.slice(0, colon) : undefined;
    const material = Buffer.from(colon > 0 ? line.slice(colon + 1) : line, "base64");
    if (material.length !== 32) throw new Error(`${source}, line ${index + 1}: a key is 32 bytes in base64 (found ${material.length} bytes)`);
    const key = new Uint8Array(material);
    const keyId = id ?? digestId(key);
    if (!KEY_ID.test(keyId)) throw new Error(`${source}, line ${index + 1}: key id "${keyId.slice(0, 64)}" may hold only letters, digits, '.', '_' and '-'`);
    if (keys.some((k) => k.id === keyId)) throw new Error(`${source}, line ${index + 1}: key id "${keyId}" appears twice`);
    keys.push({ id: keyId, key });
  }
  if (keys.length === 0) throw new Error(`${source} holds no key`);
  return keys;
}

function digestId(key: Uint8Array): string {
  return `k${createHash("sha256").update(key).digest("hex").slice(0, 12)}`;
}

/** A new key-file line with a fresh random key, named by the date so rotations sort. */
export function newKeyLine(now = new Date()): string {
  const id = `k${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`;
  return `${id}:${randomBytes(32).toString("base64")}`;
}

export function isSealed(value: Uint8Array): boolean {
  if (value.length < PREFIX_BYTES.length) return false;
  for (let i = 0; i < PREFIX_BYTES.length; i++) if (value[i] !== PREFIX_BYTES[i]) return false;
  return true;
}

/** The keys of one key file; `reload` re-reads it, for a key added on another host. */
export class KeyRing {
  constructor(
    private keys: EncryptionKey[],
    readonly path?: string,
  ) {
    if (keys.length === 0) throw new Error("a key ring needs a key");
  }

  static async fromFile(path: string): Promise<KeyRing> {
    return new KeyRing(parseKeyFile(await readFile(path, "utf8"), path), path);
  }

  /**
   * The key file at `path`, created with one fresh key (0600, next to nothing else) when it does not
   * exist yet: the file store's default, so objects are never written in clear.
   */
  static async fromFileOrNew(path: string): Promise<KeyRing> {
    try {
      return await KeyRing.fromFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    const handle = await open(path, "wx", 0o600).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "EEXIST") return undefined;
      throw error;
    });
    if (handle) {
      try {
        await handle.writeFile(`# kpass encryption key (AES-256-GCM); the first key seals, every key opens\n${newKeyLine()}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    return KeyRing.fromFile(path);
  }

  get primary(): EncryptionKey {
    return this.keys[0]!;
  }

  get ids(): string[] {
    return this.keys.map((k) => k.id);
  }

  async reload(): Promise<boolean> {
    if (!this.path) return false;
    const next = parseKeyFile(await readFile(this.path, "utf8"), this.path);
    const changed = next.map((k) => k.id).join() !== this.ids.join();
    this.keys = next;
    return changed;
  }

  /**
   * A value sealed under a key this ring lacks: another replica's key file gained a key first. The
   * file is read again once (an operator adds a key to every host's file before it is used).
   */
  private reloadFor(keyId: string): EncryptionKey | undefined {
    if (!this.path) return undefined;
    try {
      this.keys = parseKeyFile(readFileSync(this.path, "utf8"), this.path);
    } catch {
      return undefined;
    }
    return this.keys.find((k) => k.id === keyId);
  }

  seal(plain: Uint8Array, name: string): Uint8Array {
    const { id, key } = this.primary;
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, nonce);
    cipher.setAAD(Buffer.from(name));
    const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return new Uint8Array(Buffer.concat([PREFIX_BYTES, Buffer.from(`${id}:`), nonce, body]));
  }

  /** Opens a sealed value, or passes a clear one through (marked so the caller can seal it again). */
  open(value: Uint8Array, name: string): Opened {
    if (!isSealed(value)) return { plain: value };
    const rest = Buffer.from(value.buffer, value.byteOffset + PREFIX_BYTES.length, value.length - PREFIX_BYTES.length);
    const colon = rest.indexOf(0x3a);
    if (colon <= 0 || colon > 64) throw new Error(`${name}: a sealed value without a key id`);
    const keyId = rest.subarray(0, colon).toString("latin1");
    const key = this.keys.find((k) => k.id === keyId) ?? this.reloadFor(keyId);
    if (!key) throw new UnknownKeyError(name, keyId);
    const sealed = rest.subarray(colon + 1);
    if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new Error(`${name}: a sealed value too short to hold its nonce and tag`);
    const decipher = createDecipheriv("aes-256-gcm", key.key, sealed.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      const plain = Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
      return { plain: new Uint8Array(plain), keyId };
    } catch {
      throw new Error(`${name}: sealed under key "${keyId}" but does not open with it (altered, or stored under another name)`);
    }
  }

  /** Whether `opened` should be sealed again: it was in clear, or under a key that no longer seals. */
  stale(opened: Opened): boolean {
    return opened.keyId !== this.primary.id;
  }
}

export class UnknownKeyError extends Error {
  constructor(
    name: string,
    readonly keyId: string,
  ) {
    super(`${name}: sealed under key "${keyId}", which the encryption key file does not hold`);
  }
}

/** Puts `line` first in the key file at `path` (atomically), keeping every key already there. */
export async function prependKey(path: string, line: string): Promise<void> {
  let current = "";
  try {
    current = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const comments = current.split("\n").filter((l) => l.trim().startsWith("#"));
  const keys = current.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
  const text = [...comments, line, ...keys].join("\n") + "\n";
  parseKeyFile(text, path);
  await writeFileAtomic(path, text);
}
