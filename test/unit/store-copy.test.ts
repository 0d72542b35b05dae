import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StoredObject } from "../../src/core/object.ts";
import { copyStore, rotateKeys } from "../../src/server/store-transfer.ts";
import { KeyRing, newKeyLine, parseKeyFile } from "../../src/store/encryption.ts";
import { FilePersistence } from "../../src/store/file-persistence.ts";
import { FileSecrets } from "../../src/store/secrets.ts";

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "kpass-store-copy-"));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const lines = new Map<KeyRing, string>();
const ring = () => {
  const line = newKeyLine();
  const keys = new KeyRing(parseKeyFile(line));
  lines.set(keys, line.slice(line.indexOf(":") + 1));
  return keys;
};
const keyOf = (keys: KeyRing) => lines.get(keys)!;
/** Every file under `dir` with its bytes, to see whether anything was rewritten. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, entry);
    if (statSync(path).isFile()) out[entry] = readFileSync(path).toString("base64");
  }
  return out;
}
const cluster = (name: string): StoredObject => ({ apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name, uid: `uid-${name}`, resourceVersion: "7", creationTimestamp: "2026-01-01T00:00:00Z" }, spec: {} }) as StoredObject;

test("store copy into a file store: every object once, names and uids kept, secrets sealed 0600 or public 0644, a second copy refused", async () => {
  const from = tempDir();
  const to = tempDir();
  const keys = { from: ring(), to: ring() };
  const source = new FilePersistence(join(from, "objects"), keys.from);
  for (let i = 0; i < 300; i++) await source.write("clusters", cluster(`c${i}`));
  await new FileSecrets(from, keys.from).write("ca.key", "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n");
  await new FileSecrets(from, keys.from).write("ca.crt", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n");

  // A source sealed under an older key than its ring's first: reading it for the copy must not rewrite it.
  const olderFirst = { from: new KeyRing(parseKeyFile(`${newKeyLine(new Date("2027-01-01T00:00:00Z"))}\n${keys.from.primary.id}:${keyOf(keys.from)}`)), to: keys.to };
  const before = snapshot(from);
  const report = await copyStore({ kind: "file", dir: from }, { kind: "file", dir: to }, olderFirst);
  expect(snapshot(from)).toEqual(before);
  expect(report.objects).toEqual({ clusters: 300, passes: 0 });
  expect(report.secrets).toBe(2);
  const copied = await new FilePersistence(join(to, "objects"), keys.to).loadAll("clusters");
  expect(copied.map((o) => o.metadata.name).sort()).toEqual(Array.from({ length: 300 }, (_, i) => `c${i}`).sort());
  expect(copied.every((o) => o.metadata.uid === `uid-${o.metadata.name}`)).toBe(true);
  expect(statSync(join(to, "ca.key")).mode & 0o777).toBe(0o600);
  expect(statSync(join(to, "ca.crt")).mode & 0o777).toBe(0o644);
  // No temp file left behind by the atomic writes.
  expect(readdirSync(to).filter((f) => f.endsWith(".tmp"))).toEqual([]);

  await expect(copyStore({ kind: "file", dir: from }, { kind: "file", dir: to }, olderFirst)).rejects.toThrow("the destination already holds clusters/");
});

test("rotate-key on a file store counts what it sealed again, and a second run finds everything current", async () => {
  const dir = tempDir();
  const oldLine = newKeyLine(new Date("2026-01-01T00:00:00Z"));
  const old = new KeyRing(parseKeyFile(oldLine));
  const persistence = new FilePersistence(join(dir, "objects"), old);
  for (let i = 0; i < 5; i++) await persistence.write("clusters", cluster(`r${i}`));
  await new FileSecrets(dir, old).write("ca.key", "secret");
  const rotated = new KeyRing(parseKeyFile(`${newKeyLine(new Date("2026-06-01T00:00:00Z"))}\n${oldLine}`));
  expect(await rotateKeys({ kind: "file", dir }, rotated)).toEqual({ resealed: 6, current: 0 });
  expect(await rotateKeys({ kind: "file", dir }, rotated)).toEqual({ resealed: 0, current: 6 });
  // Sealed under the new key only: the old key alone no longer opens them.
  await expect(new FilePersistence(join(dir, "objects"), old).loadAll("clusters")).rejects.toThrow();
});
