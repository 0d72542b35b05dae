import { closeSync, existsSync, openSync, renameSync, statSync, writeSync } from "node:fs";
import type { ApiError } from "../api/status.ts";
import type { ProxiedEvent } from "../api/app.ts";
import type { TunnelEvent } from "../edge/upgrade-tunnel.ts";
import type { Identity } from "./identity.ts";
import type { RequestAttributes } from "./request-attributes.ts";

/** One line of the audit log. Never carries a token or a credential. */
export interface AuditEntry {
  time: string;
  pass: string;
  user: string;
  cluster: string;
  verb: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  command?: string[];
  impersonated?: string;
  message?: string;
}

export interface AuditOptions {
  /** File to append to (rotated to `<path>.1` past maxBytes), if any. */
  path?: string;
  stdout: boolean;
  maxBytes: number;
}

function attributeFields(a: RequestAttributes | undefined): Pick<AuditEntry, "verb" | "apiGroup" | "resource" | "subresource" | "namespace" | "name"> {
  return { verb: a?.verb ?? "", apiGroup: a?.apiGroup ?? "", resource: a?.resource ?? "", subresource: a?.subresource ?? "", namespace: a?.namespace ?? "", name: a?.name ?? "" };
}

/** The command of an exec (or attach's container), read from the query kubectl sends. */
function commandOf(a: RequestAttributes, search: string): string[] | undefined {
  if (a.subresource !== "exec" && a.subresource !== "attach") return undefined;
  const query = new URLSearchParams(search);
  return a.subresource === "exec" ? query.getAll("command") : [`attach:${query.get("container") ?? ""}`];
}

const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;

/**
 * Appends one JSON line per request that leaves kpass (and per refused one). Lines are batched
 * and written within 200 ms through one open descriptor, so the request path never waits on disk.
 */
export class AuditLog {
  private written = 0;
  private fd: number | undefined;
  private pending: string[] = [];
  private pendingBytes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: AuditOptions) {
    if (options.path && existsSync(options.path)) this.written = statSync(options.path).size;
    process.on("exit", () => this.flush());
  }

  get enabled(): boolean {
    return this.options.path !== undefined || this.options.stdout;
  }

  write(entry: AuditEntry): void {
    if (!this.enabled) return;
    const line = JSON.stringify(entry) + "\n";
    if (this.options.stdout) process.stdout.write(line);
    if (!this.options.path) return;
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Writes what is pending, rotating to `<path>.1` first when the file would pass maxBytes. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const path = this.options.path;
    if (!path || this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      for (const line of lines) {
        if (this.written + line.length > this.options.maxBytes && this.written > 0) this.rotate(path);
        this.fd ??= openSync(path, "a", 0o600);
        writeSync(this.fd, line);
        this.written += line.length;
      }
    } catch (error) {
      process.stderr.write(`kpass: audit log write failed: ${(error as Error).message}\n`);
    }
  }

  private rotate(path: string): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    renameSync(path, `${path}.1`);
    this.written = 0;
  }

  /** REST requests: logged when the response body has been sent (or the client left). */
  recordRequest(event: ProxiedEvent): Response | undefined {
    if (!this.enabled) return event.response;
    const { identity, req, plan } = event;
    const base = {
      pass: identity.pass,
      user: identity.user,
      cluster: plan.cluster.metadata.name,
      ...attributeFields(plan.decision.attributes),
      path: plan.target.path + plan.target.search,
      bytesIn: Number(req.headers.get("content-length") ?? 0),
      impersonated: plan.decision.impersonate?.user,
    };
    const finish = (status: number, bytesOut: number) =>
      this.write({ time: new Date().toISOString(), ...base, status, bytesOut, durationMs: Math.round((performance.now() - event.startedAt) * 100) / 100 });
    const response = event.response;
    const length = response?.headers.get("content-length");
    if (!response || !response.body || length !== null) {
      // A body of known length needs no counting wrapper, which would take it off Bun's native path.
      finish(event.status, Number(length ?? 0));
      return response;
    }
    let bytesOut = 0;
    let done = false;
    const counted = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          bytesOut += chunk.byteLength;
          controller.enqueue(chunk);
        },
        flush() {
          done = true;
          finish(event.status, bytesOut);
        },
      }),
    );
    req.signal.addEventListener("abort", () => {
      if (!done) finish(event.status, bytesOut);
    }, { once: true });
    return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers });
  }

  recordTunnel(event: TunnelEvent): void {
    const a = event.plan.decision.attributes;
    this.write({
      time: new Date().toISOString(),
      pass: event.identity.pass,
      user: event.identity.user,
      cluster: event.plan.cluster.metadata.name,
      ...attributeFields(a),
      path: event.plan.target.path + event.plan.target.search,
      status: event.status,
      bytesIn: event.bytesIn,
      bytesOut: event.bytesOut,
      durationMs: Math.round(performance.now() - event.startedAt),
      command: commandOf(a, event.plan.target.search),
      impersonated: event.plan.decision.impersonate?.user,
    });
  }

  /** A request kpass refused before it left (bad path, no access, unknown cluster). */
  recordRefused(target: string, identity: Identity | undefined, error: ApiError): void {
    const cluster = /\/clusters\/([^/]+)\/proxy/.exec(target)?.[1] ?? "";
    this.write({
      time: new Date().toISOString(),
      pass: identity?.pass ?? "",
      user: identity?.user ?? "",
      cluster,
      ...attributeFields(undefined),
      path: target,
      status: error.code,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: 0,
      message: error.message,
    });
  }

}
