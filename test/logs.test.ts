/**
 * kpass's own log for a log pipeline: with --log-format json every stderr line is one JSON object
 * with time, level and msg; startup says where kpass listens, its data dir and its store; no line
 * carries a token or a private key.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { removeDataDir } from "./harness/kpass.ts";

const ROOT = resolve(import.meta.dir, "..");
const dataDir = mkdtempSync(join(tmpdir(), "kpass-logs-"));
afterAll(() => removeDataDir(dataDir));

test("--log-format json: one object per line, startup facts, no secrets", async () => {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--log-format", "json", "--shutdown-grace", "1s"], { stdout: "pipe", stderr: "pipe", cwd: ROOT });
  const reader = proc.stderr.getReader();
  let text = "";
  const deadline = Date.now() + 15_000;
  while (!/admin kubeconfig/.test(text) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const lines = text.trim().split("\n");
  const entries = lines.map((line) => JSON.parse(line) as { time: string; level: string; msg: string; data?: string; store?: string });
  for (const e of entries) {
    expect(Number.isNaN(Date.parse(e.time))).toBe(false);
    expect(["debug", "info", "warn", "error"]).toContain(e.level);
    expect(typeof e.msg).toBe("string");
  }
  const listening = entries.find((e) => e.msg.includes("listening on https://127.0.0.1:"))!;
  expect(listening.data).toBe(dataDir);
  expect(listening.store).toBe("file");
  expect(entries.some((e) => e.msg.includes("shutting down"))).toBe(true);
  const token = readFileSync(join(dataDir, "admin.kubeconfig"), "utf8").match(/token: (\S+)/)![1]!;
  expect(text).not.toContain(token);
  expect(text).not.toContain("PRIVATE KEY");
}, 30_000);
