/**
 * Stopping without dropping what is in flight, in the order clients cope with best: unready
 * first, then no new connections, watches ended (clients re-watch, on another replica), REST
 * requests answered until the grace runs out, tunnels closed last, the audit log flushed.
 */
import type { AuditLog } from "../audit/audit-log.ts";
import type { OpenStreams } from "../auth/open-streams.ts";
import type { Edge } from "../edge/listener.ts";

export interface ShutdownParts {
  edge: Edge;
  streams: OpenStreams;
  audit: AuditLog;
  /** Everything else that runs on its own (the prober). */
  stopBackground(): void;
  log(message: string): void;
}

const POLL_MS = 50;

async function until(done: () => boolean, deadline: number): Promise<boolean> {
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await Bun.sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
  }
  return true;
}

/**
 * `delayMs`: how long to keep serving, unready, before refusing new connections (as
 * kube-apiserver's --shutdown-delay-duration), so that a load balancer sees /readyz fail first.
 */
export async function shutdown(parts: ShutdownParts, graceMs: number, delayMs = 0): Promise<void> {
  if (delayMs > 0) {
    parts.log(`shutting down: unready, serving for ${Math.round(delayMs / 100) / 10}s more`);
    await Bun.sleep(delayMs);
  }
  const deadline = Date.now() + graceMs;
  const { edge, streams } = parts;
  parts.stopBackground();
  edge.stopAccepting();
  const watches = streams.endAll("stream", "kpass is shutting down");
  edge.drain();
  parts.log(`shutting down: ${edge.busy} request(s) in flight, ${watches} watch(es) ended, grace ${Math.round(graceMs / 1000)}s`);
  const answered = await until(() => edge.busy === 0, deadline);
  if (!answered) parts.log(`grace over: ${edge.busy} request(s) still in flight are cut`);
  const tunnels = streams.endAll("tunnel", "kpass is shutting down");
  if (tunnels > 0) parts.log(`closing ${tunnels} tunnel(s)`);
  edge.stop();
  // Closing connections report their last audit lines as they go: give them a moment.
  await until(() => edge.connections === 0, Date.now() + 1000);
  streams.stop();
  parts.audit.close();
}
