import { existsSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { FileSink } from "bun";
import { eventually } from "./kpass.ts";

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

/** One stdout line of a background kubectl; `at` is performance.now() when its chunk arrived. */
export interface KubectlLine {
  text: string;
  at: number;
}

export interface BackgroundKubectlOptions {
  /** Passed as --kubeconfig ahead of `args`, and left out of describe(). */
  kubeconfig?: string;
  /** A HOME of the caller's (its discovery cache kept across calls) instead of a fresh one. */
  home?: string;
  env?: Record<string, string>;
  /** "pipe" to write() to kubectl (exec -i). */
  stdin?: "ignore" | "pipe";
}

/**
 * Starts a long-running kubectl (get -w, logs -f, exec -i, port-forward) that the test talks to
 * while it runs. stdout and stderr are read from the start so that a full pipe never stalls kubectl.
 */
export function startKubectl(version: KubectlVersion, args: string[], options: BackgroundKubectlOptions = {}) {
  const kubeconfigArgs = options.kubeconfig === undefined ? [] : ["--kubeconfig", options.kubeconfig];
  const proc = Bun.spawn([kubectlBinary(version), ...kubeconfigArgs, ...args], {
    stdin: options.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: kubectlEnv({ ...options.env, ...(options.home === undefined ? {} : { HOME: options.home }) }),
  });
  const lines: KubectlLine[] = [];
  let stdout = "";
  let stderr = "";
  // Wall clock, unlike line arrival: callers compare it with timestamps such as a pass's expiresAt.
  let exitedAt: number | undefined;
  void proc.exited.then(() => (exitedAt = Date.now()));
  void (async () => {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of proc.stdout) {
      const text = decoder.decode(chunk, { stream: true });
      stdout += text;
      partial += text;
      const parts = partial.split("\n");
      partial = parts.pop()!;
      const at = performance.now();
      for (const line of parts) lines.push({ text: line, at });
    }
  })();
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const describe = () => `kubectl ${version} ${args.join(" ")} (exit ${proc.exitCode ?? proc.signalCode ?? "pending"})\nstdout:\n${stdout}\nstderr:\n${stderr}`;
  return {
    proc,
    lines,
    stdout: () => stdout,
    stderr: () => stderr,
    describe,
    exited,
    exitedAt: () => exitedAt,
    write(text: string) {
      const sink = proc.stdin as FileSink;
      sink.write(text);
      void sink.flush();
    },
    async waitForLine(predicate: (line: string) => boolean, timeoutMs = 10_000): Promise<KubectlLine> {
      try {
        return await eventually(() => lines.find((l) => predicate(l.text)), timeoutMs);
      } catch {
        throw new Error(`expected line not seen: ${describe()}`);
      }
    },
    /** Resolves with the exit code once kubectl has ended by itself; throws with its output otherwise. */
    async waitForExit(timeoutMs: number) {
      try {
        await eventually(() => (exitedAt !== undefined ? true : undefined), timeoutMs);
      } catch {
        throw new Error(`still running after ${timeoutMs} ms: ${describe()}`);
      }
      return proc.exitCode;
    },
    async stop() {
      if (!exited()) proc.kill();
      await proc.exited;
    },
  };
}
