import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog, MAX_TARGET_BYTES, sourceIPOf, truncateField, TRUNCATED_MARKER, type AuditEntry } from "../../src/audit/audit-log.ts";
import type { Identity } from "../../src/auth/identity.ts";
import { ApiError } from "../../src/core/status.ts";
import { clusterNameOf } from "../../src/proxy/proxy-path.ts";

/** A refusal as the admission step reports it. */
function logRefusal(log: AuditLog, target: string, identity: Identity | undefined, error: ApiError, source?: string): void {
  log.record({ pass: identity?.pass ?? "", user: identity?.user ?? "", cluster: clusterNameOf(target), target, status: error.code, bytesIn: 0, bytesOut: 0, message: error.message, sourceIP: source });
}

const dir = mkdtempSync(join(tmpdir(), "kpass-audit-hardening-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = () => join(dir, `audit-${n++}.log`);

const entry = (name: string): AuditEntry => ({
  time: new Date(0).toISOString(),
  pass: "alice",
  user: "alice",
  cluster: "prod",
  verb: "delete",
  apiGroup: "",
  resource: "secrets",
  subresource: "",
  namespace: "team-a",
  name,
  path: `/api/v1/namespaces/team-a/secrets/${name}`,
  status: 200,
  bytesIn: 0,
  bytesOut: 100,
  durationMs: 1,
});

const lines = (path: string) => readFileSync(path, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
const unauthorized = new ApiError(401, "Unauthorized", "Unauthorized: no bearer token");

const alice: Identity = { pass: "alice", passUid: "u", user: "alice", groups: [], isAdmin: false, rules: [], reachesCluster: () => true };

describe("truncation", () => {
  test("a long field keeps its first bytes, a marker and its full size", () => {
    const long = "/api/v1/" + "a".repeat(60_000);
    const cut = truncateField(long, MAX_TARGET_BYTES);
    expect(cut.startsWith(long.slice(0, MAX_TARGET_BYTES))).toBe(true);
    expect(cut).toEndWith(`${TRUNCATED_MARKER}${long.length} bytes]`);
    expect(truncateField("/short", MAX_TARGET_BYTES)).toBe("/short");
  });

  test("cuts on a character boundary", () => {
    const cut = truncateField("é".repeat(3000), 4095);
    expect(cut).not.toContain("\uFFFD");
    expect(cut.startsWith("é".repeat(2047) + TRUNCATED_MARKER)).toBe(true);
  });

  test("refused targets and messages are written truncated", () => {
    const path = freshPath();
    const log = new AuditLog({ path, stdout: false, maxBytes: 10 * 1024 * 1024 });
    const target = "/apis/cluster.kpass.dev/v1beta1/clusters/" + "c".repeat(70_000) + "/proxy/api";
    logRefusal(log, target, alice, new ApiError(404, "NotFound", `clusters "${"c".repeat(70_000)}" not found`), "10.0.0.1:5555");
    log.close();
    const [line] = lines(path);
    expect(Buffer.byteLength(line!.path)).toBeLessThan(MAX_TARGET_BYTES + 64);
    expect(line!.path).toContain(TRUNCATED_MARKER);
    expect(Buffer.byteLength(line!.message!)).toBeLessThan(4096 + 64);
    expect(Buffer.byteLength(line!.cluster)).toBeLessThan(1024 + 64);
    expect(line!.sourceIPs).toEqual(["10.0.0.1"]);
  });
});

describe("source addresses", () => {
  test("ip, ip:port and [ipv6]:port", () => {
    expect(sourceIPOf("10.0.0.1")).toBe("10.0.0.1");
    expect(sourceIPOf("10.0.0.1:443")).toBe("10.0.0.1");
    expect(sourceIPOf("[::1]:443")).toBe("::1");
    expect(sourceIPOf("fe80::1")).toBe("fe80::1");
  });
});

describe("refusals before authentication are rate limited per source", () => {
  test("a flood of 10,000 refusals with 60 KB targets leaves earlier evidence in audit.log and the file bounded", () => {
    const path = freshPath();
    let now = Date.parse("2025-01-01T00:00:00Z");
    const log = new AuditLog({ path, stdout: false, maxBytes: 1024 * 1024, now: () => now });
    for (let i = 0; i < 5; i++) log.write(entry(`evidence-${i}`));
    log.flush();
    const target = "/apis/cluster.kpass.dev/v1beta1/clusters/prod/proxy/api/v1/" + "x".repeat(60 * 1024);
    for (let i = 0; i < 10_000; i++) logRefusal(log, target, undefined, unauthorized, `203.0.113.7:${10_000 + i}`);
    log.flush();
    now += 1000; // the window ends: the summary is written on the next flush
    log.flush();
    log.close();

    expect(existsSync(`${path}.1`)).toBe(false);
    expect(statSync(path).size).toBeLessThan(100 * 1024);
    const all = lines(path);
    expect(all.slice(0, 5).map((l) => l.name)).toEqual(["evidence-0", "evidence-1", "evidence-2", "evidence-3", "evidence-4"]);
    const refused = all.filter((l) => l.status === 401 && l.suppressed === undefined);
    expect(refused.length).toBe(10);
    const summaries = all.filter((l) => l.suppressed !== undefined);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.suppressed).toBe(9_990);
    expect(summaries[0]!.sourceIPs).toEqual(["203.0.113.7"]);
    expect(summaries[0]!.message).toContain("9990 more refusal(s)");
  });

  test("each source has its own allowance, all sources together a total one", () => {
    const path = freshPath();
    let now = 0;
    const log = new AuditLog({ path, stdout: false, maxBytes: 1024 * 1024, now: () => now, unauthenticatedRefusalsPerSource: 2, unauthenticatedRefusalsTotal: 5 });
    for (let s = 0; s < 4; s++) for (let i = 0; i < 3; i++) logRefusal(log, "/api", undefined, unauthorized, `198.51.100.${s}`);
    now = 1000;
    logRefusal(log, "/api", undefined, unauthorized, "198.51.100.9");
    log.close();
    const all = lines(path);
    const singles = all.filter((l) => l.suppressed === undefined);
    expect(singles).toHaveLength(6); // 5 in the first window, 1 in the next
    expect(all.filter((l) => l.suppressed !== undefined)).toHaveLength(3); // two sources over their own allowance, one for the rest
    const suppressed = all.filter((l) => l.suppressed !== undefined).reduce((sum, l) => sum + l.suppressed!, 0);
    expect(suppressed).toBe(12 - 5);
  });

  test("many sources cannot each earn a line: the total allowance holds and the rest share one summary", () => {
    const path = freshPath();
    let now = 0;
    const log = new AuditLog({ path, stdout: false, maxBytes: 1024 * 1024, now: () => now });
    for (let i = 0; i < 10_000; i++) logRefusal(log, "/api/" + "y".repeat(60 * 1024), undefined, unauthorized, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:1`);
    now = 1000;
    log.close();
    const all = lines(path);
    expect(all.filter((l) => l.suppressed === undefined)).toHaveLength(50);
    const summaries = all.filter((l) => l.suppressed !== undefined);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.suppressed).toBe(10_000 - 50);
    expect(statSync(path).size).toBeLessThan(300 * 1024);
  });

  test("refusals of an authenticated pass are not rate limited", () => {
    const path = freshPath();
    const log = new AuditLog({ path, stdout: false, maxBytes: 1024 * 1024, now: () => 0 });
    for (let i = 0; i < 50; i++) logRefusal(log, "/api", alice, new ApiError(403, "Forbidden", "no"), "10.0.0.1");
    log.close();
    expect(lines(path)).toHaveLength(50);
  });
});

describe("rotation keeps maxBackups files", () => {
  test("audit.log.1 … audit.log.N, the oldest dropped", () => {
    const path = freshPath();
    const log = new AuditLog({ path, stdout: false, maxBytes: 400, maxBackups: 3 });
    for (let i = 0; i < 40; i++) {
      log.write(entry(`e${i}`));
      log.flush();
    }
    log.close();
    for (const k of [1, 2, 3]) expect(existsSync(`${path}.${k}`)).toBe(true);
    expect(existsSync(`${path}.4`)).toBe(false);
    const order = [`${path}.3`, `${path}.2`, `${path}.1`, path].flatMap((p) => lines(p).map((l) => Number(l.name.slice(1))));
    expect(order).toEqual([...order].sort((x, y) => x - y));
    expect(order.at(-1)).toBe(39);
  });

  test("the default keeps 10", () => {
    const path = freshPath();
    const log = new AuditLog({ path, stdout: false, maxBytes: 300 });
    for (let i = 0; i < 30; i++) {
      log.write(entry(`e${i}`));
      log.flush();
    }
    log.close();
    expect(existsSync(`${path}.10`)).toBe(true);
    expect(existsSync(`${path}.11`)).toBe(false);
  });
});

describe("write errors", () => {
  test("are counted and reported on stderr, and writing resumes when the file can be written again", () => {
    const path = freshPath();
    mkdirSync(path); // a directory where the file should be: opening it fails, even for root
    const log = new AuditLog({ path, stdout: false, maxBytes: 1024 * 1024 });
    const written: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      log.write(entry("lost"));
      log.flush();
    } finally {
      process.stderr.write = original;
    }
    expect(log.writeErrors).toBe(1);
    expect(written.join("")).toContain(`audit log write to ${path} (1 line(s) lost) failed`);
    rmSync(path, { recursive: true });
    log.write(entry("kept"));
    log.close();
    expect(log.writeErrors).toBe(1);
    expect(lines(path).map((l) => l.name)).toEqual(["kept"]);
  });
});
