import { existsSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** kubectl minor versions this machine ships beside the `kubectl` on PATH. */
export type KubectlVersion = "1.27" | "1.28" | "1.29" | "1.30" | "1.31" | "1.32" | "1.33";

function kubectlDirectory(): string {
  const onPath = Bun.which("kubectl");
  if (!onPath) throw new Error("kubectl is not on PATH");
  return dirname(realpathSync(onPath));
}

/** Absolute path of a fixed kubectl version (≤1.29 speaks SPDY for exec, ≥1.30 WebSocket). */
export function kubectlBinary(version: KubectlVersion): string {
  const path = join(kubectlDirectory(), `kubectl.${version}`);
  if (!existsSync(path)) throw new Error(`kubectl ${version} not found at ${path}`);
  return path;
}

const homes: string[] = [];
process.on("exit", () => {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

/**
 * Environment for one kubectl process with a fresh HOME: kubectl caches discovery per host:port
 * for hours, and test servers reuse random ports, so a shared cache could answer for another server.
 */
export function kubectlEnv(extra: Record<string, string> = {}): Record<string, string> {
  const home = mkdtempSync(join(tmpdir(), "kpass-kubectl-home-"));
  homes.push(home);
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, ...extra };
}

export interface KubectlResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl with a fresh HOME (see kubectlEnv). */
export async function runKubectl(
  version: KubectlVersion,
  args: string[],
  options: { stdin?: string | Uint8Array; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  const proc = Bun.spawn([kubectlBinary(version), ...args], {
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env: kubectlEnv(options.env),
  });
  const timer = setTimeout(() => proc.kill(), options.timeoutMs ?? 30_000);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}
