import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isSealed, KeyRing, newKeyLine, parseKeyFile, prependKey } from "../../src/store/encryption.ts";
import { FilePersistence } from "../../src/store/file-persistence.ts";
import { FileSecrets, loadOrCreatePair } from "../../src/store/secrets.ts";
import type { StoredObject } from "../../src/core/object.ts";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kpass-encryption-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const key32 = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");

describe("key file", () => {
  test("one key a line, with or without an id; comments and blank lines ignored", () => {
    const plain = key32();
    const keys = parseKeyFile(`# rotated 2026-12\nnew:${key32()}\n\n${plain}  # the old one\n`);
    expect(keys.map((k) => k.id)[0]).toBe("new");
    expect(keys[1]!.id).toMatch(/^k[0-9a-f]{12}$/);
    expect(keys.every((k) => k.key.length === 32)).toBe(true);
  });

  test("refuses a short key, a duplicate id, a bad id and an empty file, naming the line", () => {
    expect(() => parseKeyFile(`a:${Buffer.alloc(16).toString("base64")}`)).toThrow("line 1: a key is 32 bytes in base64 (found 16 bytes)");
    const k = key32();
    expect(() => parseKeyFile(`a:${k}\na:${key32()}`)).toThrow(`line 2: key id "a" appears twice`);
    expect(() => parseKeyFile(`bad id:${k}`)).toThrow("may hold only letters");
    expect(() => parseKeyFile("# nothing\n")).toThrow("holds no key");
  });

  test("newKeyLine is a valid line; prependKey puts it first and keeps the others", async () => {
    const dir = tempDir();
    const path = join(dir, "key");
    writeFileSync(path, `# mine\nold:${key32()}\n`);
    await prependKey(path, newKeyLine(new Date("2026-12-03T10:00:00Z")));
    const keys = parseKeyFile(readFileSync(path, "utf8"));
    expect(keys.map((k) => k.id)).toEqual(["k20261203T100000Z", "old"]);
    expect(readFileSync(path, "utf8")).toContain("# mine");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test("fromFileOrNew creates a 0600 key file once and reads it afterwards", async () => {
    const path = join(tempDir(), "encryption.key");
    const first = await KeyRing.fromFileOrNew(path);
    const second = await KeyRing.fromFileOrNew(path);
    expect(second.primary.id).toBe(first.primary.id);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});

describe("sealing", () => {
  const ring = new KeyRing(parseKeyFile(`a:${key32()}`));

  test("a sealed value names its key, hides its content and opens under its name only", () => {
    const sealed = ring.seal(bytes('{"token":"s3cret"}'), "clusters/prod");
    expect(isSealed(sealed)).toBe(true);
    expect(text(sealed).startsWith("kpass:enc:aesgcm:v1:a:")).toBe(true);
    expect(text(sealed)).not.toContain("s3cret");
    expect(text(ring.open(sealed, "clusters/prod").plain)).toBe('{"token":"s3cret"}');
    // Moved under another name (one cluster's credentials pasted over another's): refused.
    expect(() => ring.open(sealed, "clusters/dev")).toThrow("does not open with it");
  });

  test("two seals of one value differ (a fresh nonce each time)", () => {
    expect(Buffer.from(ring.seal(bytes("x"), "n")).equals(Buffer.from(ring.seal(bytes("x"), "n")))).toBe(false);
  });

  test("an altered byte, a truncated value and an unknown key are errors, never garbage", () => {
    const sealed = ring.seal(bytes("value"), "n");
    const altered = new Uint8Array(sealed);
    altered[altered.length - 3]! ^= 1;
    expect(() => ring.open(altered, "n")).toThrow("does not open");
    expect(() => ring.open(sealed.subarray(0, 30), "n")).toThrow("too short");
    const other = new KeyRing(parseKeyFile(`b:${key32()}`));
    expect(() => other.open(sealed, "n")).toThrow('sealed under key "a", which the encryption key file does not hold');
  });

  test("a value in clear (written before encryption) opens as itself and is stale; so is one under a retired key", () => {
    const opened = ring.open(bytes('{"a":1}'), "n");
    expect(text(opened.plain)).toBe('{"a":1}');
    expect(ring.stale(opened)).toBe(true);
    const rotated = new KeyRing([{ id: "z", key: new Uint8Array(32).fill(7) }, ...parseKeyFile(`a:${Buffer.from(ring.primary.key).toString("base64")}`)]);
    const old = rotated.open(ring.seal(bytes("v"), "n"), "n");
    expect(text(old.plain)).toBe("v");
    expect(rotated.stale(old)).toBe(true);
  });

  test("a ring reads its key file again for a key another host added first", async () => {
    const path = join(tempDir(), "key");
    writeFileSync(path, `a:${key32()}\n`);
    const here = await KeyRing.fromFile(path);
    const elsewhere = new KeyRing(parseKeyFile(`b:${key32()}`));
    const sealed = elsewhere.seal(bytes("v"), "n");
    writeFileSync(path, `a:${Buffer.from(here.primary.key).toString("base64")}\nb:${Buffer.from(elsewhere.primary.key).toString("base64")}\n`);
    expect(text(here.open(sealed, "n").plain)).toBe("v");
  });
});

describe("the file store seals what it writes", () => {
  const object = (name: string, token: string): StoredObject => ({ apiVersion: "v1", kind: "Thing", metadata: { name, uid: "u", resourceVersion: "3", generation: 1, creationTimestamp: "2026-01-01T00:00:00Z" }, spec: { token } });

  test("objects are sealed on disk and read back; one written in clear is sealed again on load", async () => {
    const root = tempDir();
    const ring = new KeyRing(parseKeyFile(`a:${key32()}`));
    const persistence = new FilePersistence(root, ring);
    await persistence.write("things", object("one", "token-one"));
    expect(readFileSync(join(root, "things", "one.json"), "latin1")).not.toContain("token-one");
    writeFileSync(join(root, "things", "two.json"), JSON.stringify(object("two", "token-two")));
    const loaded = await persistence.loadAll("things");
    expect(loaded.map((o) => (o.spec as { token: string }).token).sort()).toEqual(["token-one", "token-two"]);
    expect(readFileSync(join(root, "things", "two.json"), "latin1")).not.toContain("token-two");
    expect(isSealed(readFileSync(join(root, "things", "two.json")))).toBe(true);
  });

  test("an object under a key the file lacks stops the load instead of being set aside", async () => {
    const root = tempDir();
    await new FilePersistence(root, new KeyRing(parseKeyFile(`a:${key32()}`))).write("things", object("one", "t"));
    await expect(new FilePersistence(root, new KeyRing(parseKeyFile(`b:${key32()}`))).loadAll("things")).rejects.toThrow("does not hold");
  });

  test("secrets: keys sealed (0600), certificates readable (0644); an existing secret is never replaced by createIfAbsent", async () => {
    const dir = tempDir();
    const secrets = new FileSecrets(dir, new KeyRing(parseKeyFile(`a:${key32()}`)));
    const pair = await loadOrCreatePair(secrets, { cert: "ca.crt", key: "ca.key" }, async () => ({ certPem: "CERT", keyPem: "-----BEGIN PRIVATE KEY-----" }));
    expect(readFileSync(join(dir, "ca.crt"), "utf8")).toBe("CERT");
    expect(readFileSync(join(dir, "ca.key"), "latin1")).not.toContain("PRIVATE KEY");
    expect(statSync(join(dir, "ca.key")).mode & 0o777).toBe(0o600);
    expect(await secrets.createIfAbsent("ca.key", "another")).toBe(pair.keyPem);
    expect(await loadOrCreatePair(secrets, { cert: "ca.crt", key: "ca.key" }, async () => ({ certPem: "X", keyPem: "Y" }))).toEqual(pair);
    await expect(secrets.read("../etc/passwd")).rejects.toThrow("refusing to store a secret");
  });
});
