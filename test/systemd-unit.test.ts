import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unixAddress } from "../src/cli/sd-notify.ts";
import { removeDataDir, startKpass } from "./harness/kpass.ts";

const ROOT = join(import.meta.dir, "..");
const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDataDir));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kpass-unit-"));
  dirs.push(dir);
  return dir;
}

async function run(argv: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", cwd: ROOT });
  const timer = setTimeout(() => proc.kill(), 30_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

const unit = (args: string[]) => run([process.execPath, join(ROOT, "src/cli/main.ts"), "systemd-unit", ...args]);

/** The unit's settings, `Key=value` lines of [Service]. */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

// systemd-analyze ships in Debian's systemd package, which .ci/run installs; a developer's machine
// may lack it, CI may not.
const analyze = Bun.which("systemd-analyze");
const inCI = process.env.CI === "true";
if (!analyze && !inCI) console.warn("systemd-unit.test.ts: systemd-analyze not found (apt-get install systemd): skipping `systemd-analyze verify`");
const verifyTest = analyze || inCI ? test : test.skip;

/** `systemd-analyze verify` on `text`; it exits 0 on unknown keys, so its warnings count as failures too. */
async function verify(text: string): Promise<string> {
  if (!analyze) throw new Error("systemd-analyze is missing in CI: .ci/run installs Debian's systemd package");
  const dir = tempDir();
  const file = join(dir, "kpass.service");
  writeFileSync(file, text);
  const result = await run([analyze, "verify", file]);
  return `exit ${result.exitCode}${result.stderr ? `: ${result.stderr.trim()}` : ""}`;
}

describe("kpass systemd-unit", () => {
  verifyTest("systemd-analyze verify finds nothing wrong with the unit on an unprivileged port", async () => {
    // ExecStart's binary must exist for verify; /bin/true stands in for /usr/local/bin/kpass.
    const printed = await unit(["--user", "kpass", "--data", "/var/lib/kpass", "--binary", "/bin/true", "--listen", "0.0.0.0:8443", "--san", "bastion.example.test"]);
    expect(printed.stderr).toBe("");
    expect(await verify(printed.stdout)).toBe("exit 0");
    const s = settings(printed.stdout);
    expect(s.get("ExecStart")).toEqual(["/bin/true serve --data /var/lib/kpass --listen 0.0.0.0:8443 --san bastion.example.test"]);
    expect(s.get("Type")).toEqual(["notify"]);
    expect(s.get("User")).toEqual(["kpass"]);
    expect(s.get("Group")).toEqual(["kpass"]);
    expect(s.get("CapabilityBoundingSet")).toEqual([""]);
    expect(s.has("AmbientCapabilities")).toBe(false);
    expect(s.get("StateDirectory")).toEqual(["kpass"]);
    expect(s.get("ReadWritePaths")).toEqual(["/var/lib/kpass"]);
    for (const [key, value] of [["NoNewPrivileges", "yes"], ["ProtectSystem", "strict"], ["ProtectHome", "yes"], ["PrivateTmp", "yes"], ["PrivateDevices", "yes"], ["LimitNOFILE", "1048576"], ["Restart", "on-failure"], ["KillSignal", "SIGTERM"], ["TimeoutStopSec", "35s"]] as const) {
      expect([key, s.get(key)]).toEqual([key, [value]]);
    }
  });

  verifyTest("a port below 1024 keeps CAP_NET_BIND_SERVICE and nothing else; a data dir outside /var/lib has no StateDirectory", async () => {
    const printed = await unit(["--user", "gateway", "--group", "ops", "--data", "/srv/kpass data", "--binary", "/bin/true", "--listen", "[::]:443"]);
    // Whitespace cannot stand in ReadWritePaths=; the user is told rather than given a broken unit.
    expect(printed.exitCode).toBe(1);
    expect(printed.stderr).toContain("contains whitespace");

    const low = await unit(["--user", "gateway", "--group", "ops", "--data", "/srv/kpass", "--binary", "/bin/true", "--listen", "[::]:443"]);
    expect(await verify(low.stdout)).toBe("exit 0");
    const s = settings(low.stdout);
    expect(s.get("CapabilityBoundingSet")).toEqual(["CAP_NET_BIND_SERVICE"]);
    expect(s.get("AmbientCapabilities")).toEqual(["CAP_NET_BIND_SERVICE"]);
    expect(s.has("StateDirectory")).toBe(false);
    expect(s.get("ReadWritePaths")).toEqual(["/srv/kpass"]);
    expect(s.get("Group")).toEqual(["ops"]);
  });

  verifyTest("with --config, the file's listen port decides the capabilities and ExecStart names the file", async () => {
    const dir = tempDir();
    const config = join(dir, "config.yaml");
    writeFileSync(config, "listen: 0.0.0.0:443\nidleTimeout: 5m\n");
    const printed = await unit(["--config", config, "--binary", "/bin/true", "--upstream-timeout", "30s"]);
    expect(await verify(printed.stdout)).toBe("exit 0");
    const s = settings(printed.stdout);
    expect(s.get("ExecStart")).toEqual([`/bin/true serve --data /var/lib/kpass --config ${config} --upstream-timeout 30s`]);
    expect(s.get("CapabilityBoundingSet")).toEqual(["CAP_NET_BIND_SERVICE"]);
  });

  verifyTest("the verify check is not blind: a misspelt key in a unit is reported", async () => {
    const printed = await unit(["--binary", "/bin/true"]);
    expect(await verify(printed.stdout.replace("ProtectHome=yes", "ProtectHomes=yes"))).toContain("Unknown key 'ProtectHomes'");
  });

  test("serve flags are checked before they reach ExecStart; quoting keeps systemd from expanding them", async () => {
    const bad = await unit(["--idle-timeout", "forever"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toBe('kpass: --idle-timeout: "forever" is not a duration such as 30s or 5m\n');
    const root = await unit(["--user", "root"]);
    expect(root.exitCode).toBe(1);
    expect(root.stderr).toContain("kpass does not need root");
    const quoted = await unit(["--external-url", "https://kpass.example.test/a%20b$HOME"]);
    expect(settings(quoted.stdout).get("ExecStart")![0]).toEndWith(' --external-url "https://kpass.example.test/a%%20b$$HOME"');
  });
});

describe("sd_notify", () => {
  test("kpass serve sends READY=1 to $NOTIFY_SOCKET once its admin kubeconfig is written", async () => {
    const { dlopen, FFIType, ptr } = await import("bun:ffi");
    const libc = dlopen("libc.so.6", {
      socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
      recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
      close: { args: [FFIType.i32], returns: FFIType.i32 },
    });
    const AF_UNIX = 1, SOCK_DGRAM = 2, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
    // The abstract namespace, as systemd itself uses: nothing to clean up on disk.
    const name = `@kpass-test-notify-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const fd = libc.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const { address, length } = unixAddress(name);
    expect(libc.symbols.bind(fd, ptr(address), length)).toBe(0);
    const dataDir = tempDir();
    const kpass = await startKpass({ dataDir, env: { ...process.env, NOTIFY_SOCKET: name } });
    const buffer = new Uint8Array(4096);
    let received = "";
    for (let i = 0; i < 100 && !received; i++) {
      const n = Number(libc.symbols.recv(fd, ptr(buffer), buffer.length, 0));
      if (n > 0) received = Buffer.from(buffer.subarray(0, n)).toString();
      else await Bun.sleep(50);
    }
    libc.symbols.close(fd);
    libc.close();
    expect(received).toBe(`READY=1\nSTATUS=listening on ${kpass.url}\nMAINPID=${kpass.pid}`);
    await kpass.stop();
  });
});
