/**
 * A real single-member etcd for tests, on random loopback ports with a fresh data directory. No
 * test depends on an etcd the machine runs (the Debian package's service on 2379).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export interface EtcdProcess {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  dataDir: string;
  pid: number;
  /** SIGTERM, wait for the exit, remove the data directory. */
  stop(): Promise<void>;
  /** SIGKILL and wait; the data directory stays for restart(). */
  kill(): Promise<void>;
  /** Stops it if it runs (SIGTERM), then starts it again on the same data directory and ports. */
  restart(): Promise<void>;
}

export interface EtcdStartOptions {
  /** Serve clients over TLS with these files, and demand a client certificate of `trustedCaFile`. */
  tls?: { certFile: string; keyFile: string; trustedCaFile: string; client: { certPem: string; keyPem: string } };
  /** --experimental-watch-progress-notify-interval (etcd's default is 10 min). */
  progressNotifyIntervalMs?: number;
}

const HEALTH_DEADLINE_MS = 15_000;

export function etcdBinary(): string | undefined {
  if (existsSync("/usr/bin/etcd")) return "/usr/bin/etcd";
  return Bun.which("etcd") ?? undefined;
}

/**
 * Whether tests can run etcd. In CI a missing etcd is an error (the tests fail rather than skip),
 * as .ci/run installs it.
 */
export function etcdAvailable(): boolean {
  const found = etcdBinary() !== undefined;
  if (!found && process.env.CI === "true") throw new Error("etcd is not installed, and CI=true: .ci/run should have installed etcd-server");
  return found;
}

/** Every etcd a test started, so none outlives the test process even when a test fails early. */
const running = new Map<Subprocess, string>();
process.on("exit", () => {
  for (const [proc, dataDir] of running) {
    proc.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  }
});

/** A port that was free a moment ago (the kernel's choice); etcd binds it right after. */
function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

async function waitHealthy(endpoint: string, proc: Subprocess, tls?: EtcdStartOptions["tls"]): Promise<void> {
  const tlsOptions = tls ? { ca: readFileSync(tls.trustedCaFile, "utf8"), cert: tls.client.certPem, key: tls.client.keyPem } : undefined;
  const deadline = Date.now() + HEALTH_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`etcd exited (${proc.exitCode ?? proc.signalCode}) before it was healthy`);
    try {
      const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000), tls: tlsOptions });
      const body = (await response.json()) as { health?: string };
      if (body.health === "true") return;
    } catch {
      // Not listening yet.
    }
    await Bun.sleep(50);
  }
  throw new Error(`etcd at ${endpoint} not healthy within ${HEALTH_DEADLINE_MS} ms`);
}

export async function startEtcd(options: EtcdStartOptions = {}): Promise<EtcdProcess> {
  const binary = etcdBinary();
  if (!binary) throw new Error("etcd is not installed (Debian: apt-get install etcd-server)");
  const dataDir = mkdtempSync(join(tmpdir(), "kpass-etcd-"));
  const clientUrl = `${options.tls ? "https" : "http"}://127.0.0.1:${freePort()}`;
  const peerUrl = `http://127.0.0.1:${freePort()}`;
  const args = [
    binary,
    "--name=test",
    `--data-dir=${join(dataDir, "member")}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=test=${peerUrl}`,
    // 3.4 defaults to the capnslog logger, whose --log-level is ignored; zap honours it.
    "--logger=zap",
    "--log-level=error",
  ];
  if (options.tls) args.push(`--cert-file=${options.tls.certFile}`, `--key-file=${options.tls.keyFile}`, `--trusted-ca-file=${options.tls.trustedCaFile}`, "--client-cert-auth");
  if (options.progressNotifyIntervalMs !== undefined) args.push(`--experimental-watch-progress-notify-interval=${options.progressNotifyIntervalMs}ms`);

  let proc: Subprocess | undefined;
  const launch = async (): Promise<void> => {
    const started = Bun.spawn(args, { stdout: "ignore", stderr: "inherit" });
    proc = started;
    running.set(started, dataDir);
    await waitHealthy(clientUrl, started, options.tls);
  };
  const signal = async (name: "SIGTERM" | "SIGKILL"): Promise<void> => {
    const current = proc;
    if (!current) return;
    proc = undefined;
    current.kill(name);
    await current.exited;
    running.delete(current);
  };

  try {
    await launch();
  } catch (error) {
    await signal("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  const handle: EtcdProcess = {
    endpoint: clientUrl,
    dataDir,
    pid: proc!.pid,
    async stop() {
      await signal("SIGTERM");
      rmSync(dataDir, { recursive: true, force: true });
    },
    kill: () => signal("SIGKILL"),
    async restart() {
      await signal("SIGTERM");
      await launch();
      handle.pid = proc!.pid;
    },
  };
  return handle;
}
