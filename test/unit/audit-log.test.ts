import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog, type AuditEntry } from "../../src/audit/audit-log.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-audit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const entry = (i: number): AuditEntry => ({
  time: new Date(0).toISOString(),
  pass: "alice",
  user: "alice",
  cluster: "prod",
  verb: "get",
  apiGroup: "",
  resource: "pods",
  subresource: "",
  namespace: "team-a",
  name: `web-${i}`,
  path: `/api/v1/namespaces/team-a/pods/web-${i}`,
  status: 200,
  bytesIn: 0,
  bytesOut: 100,
  durationMs: 1,
});

describe("AuditLog", () => {
  test("appends JSON lines with mode 0600 and rotates to .1 past the size limit", () => {
    const path = join(dir, "audit.log");
    const log = new AuditLog({ path, stdout: false, maxBytes: 1000 });
    for (let i = 0; i < 10; i++) log.write(entry(i));
    log.flush();
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(path).size).toBeLessThanOrEqual(1000);
    const current = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const rotated = readFileSync(`${path}.1`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect([...rotated, ...current].map((e) => e.name).slice(-current.length)).toEqual(current.map((e) => e.name));
    expect(current.at(-1).name).toBe("web-9");
    expect(rotated.length + current.length).toBeLessThanOrEqual(10);
  });

  test("a disabled log writes nothing", () => {
    const log = new AuditLog({ stdout: false, maxBytes: 1000 });
    expect(log.enabled).toBe(false);
    log.write(entry(1));
  });
});
