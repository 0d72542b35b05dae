/**
 * The audit log: a sink every entry point feeds with one AuditEvent per cluster-bound request.
 * It imports nothing of kpass but the ground floor.
 */
import { closeSync, existsSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { logger } from "../core/log.ts";

/** What authorization read a request as (auth's RequestAttributes fits it). */
export interface AuditAttributes {
  verb: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

/**
 * The one thing producers tell the audit log: a cluster-bound request that left kpass and ended,
 * or one kpass refused. Every entry point (REST proxy, upgrade tunnel) fills in the same fields.
 */
export interface AuditEvent {
  /** Empty when the request was refused before it authenticated. */
  pass: string;
  user: string;
  /** Empty when the target did not name one. */
  cluster: string;
  /** Absent when refused before authorization read the request. */
  attributes?: AuditAttributes;
  /** The path and query on the cluster for a request that left kpass; the raw request target for a refusal. */
  target: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  /** performance.now() when kpass began on the request; absent for refusals (duration 0). */
  startedAt?: number;
  /** The user the cluster was asked to act as. */
  impersonated?: string;
  /** Why kpass refused the request. */
  message?: string;
  /** The client's address ("ip" or "ip:port"). */
  sourceIP?: string;
  /** Serial (hex) of the client certificate the request authenticated with; absent for a token. */
  clientCertificateSerial?: string;
  /** A client certificate kpass issued in answer to this request (target: the certificate subresource). */
  issuedCertificate?: IssuedCertificateRecord;
}

/** What the audit log keeps of an issued certificate: for which pass, its serial and its end. */
export interface IssuedCertificateRecord {
  pass: string;
  serial: string;
  /** RFC 3339. */
  notAfter: string;
}

/** One line of the audit log. Never carries a token or a credential. */
export interface AuditEntry extends AuditAttributes {
  time: string;
  pass: string;
  user: string;
  cluster: string;
  /** The request target, at most MAX_TARGET_BYTES bytes (then TRUNCATED_MARKER and the full size). */
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  command?: string[];
  impersonated?: string;
  message?: string;
  /** The client's address (Kubernetes audit naming). */
  sourceIPs?: string[];
  /** Serial of the client certificate the request authenticated with. */
  clientCertificateSerial?: string;
  /** The certificate issued in answer to the request. */
  issuedCertificate?: IssuedCertificateRecord;
  /** On a summary line: how many refusals before authentication from sourceIPs were not written one by one. */
  suppressed?: number;
}

export interface AuditOptions {
  /** File to append to (rotated to `<path>.1` … `<path>.<maxBackups>` past maxBytes), if any. */
  path?: string;
  stdout: boolean;
  maxBytes: number;
  /** Rotated files kept, like kube-apiserver's --audit-log-maxbackup; default 10; 0 keeps every one. */
  maxBackups?: number;
  /** Lines per source per window for refusals before authentication; the rest are counted in one summary line. Default 10. */
  unauthenticatedRefusalsPerSource?: number;
  /** Lines per window for refusals before authentication, all sources together. Default 50. */
  unauthenticatedRefusalsTotal?: number;
  /** Length of a rate-limit window in milliseconds; default 1000. */
  refusalWindowMs?: number;
  /** Clock (ms), for tests; default Date.now. */
  now?: () => number;
}

/** Longest request target written to a line, in UTF-8 bytes. */
export const MAX_TARGET_BYTES = 4096;
/** Longest refusal message written to a line, in UTF-8 bytes. */
export const MAX_MESSAGE_BYTES = 4096;
/** Longest other string field (cluster, name, namespace, …; each command word) written to a line, in UTF-8 bytes. */
export const MAX_FIELD_BYTES = 1024;
/** Longest exec command written to a line, all words together. */
const MAX_COMMAND_BYTES = 4096;
/** Ends a truncated field, followed by the field's full size: `…[truncated, 61440 bytes]`. */
export const TRUNCATED_MARKER = "…[truncated, ";
/** Sources tracked at once for rate limiting; beyond it, new sources share one bucket. */
const MAX_TRACKED_SOURCES = 10_000;
const OTHER_SOURCES = "(other sources)";

/**
 * `value` cut to at most `max` UTF-8 bytes (on a character boundary), then a marker with its full
 * size; unchanged when it fits.
 */
export function truncateField(value: string, max: number): string {
  if (value.length * 3 <= max) return value;
  const size = Buffer.byteLength(value, "utf8");
  if (size <= max) return value;
  let cut = Buffer.from(value, "utf8").subarray(0, max).toString("utf8");
  // A character cut in half decodes to U+FFFD at the end; drop it.
  if (cut.endsWith("\uFFFD") && !value.startsWith(cut)) cut = cut.slice(0, -1);
  return `${cut}${TRUNCATED_MARKER}${size} bytes]`;
}

function clip(value: string): string {
  return truncateField(value, MAX_FIELD_BYTES);
}

/** The IP of "ip", "ip:port" or "[ipv6]:port". */
export function sourceIPOf(source: string): string {
  if (source.startsWith("[")) {
    const end = source.indexOf("]");
    return end > 0 ? source.slice(1, end) : source;
  }
  const colon = source.indexOf(":");
  return colon >= 0 && colon === source.lastIndexOf(":") ? source.slice(0, colon) : source;
}

function sourceIPs(source: string | undefined): string[] | undefined {
  return source ? [clip(sourceIPOf(source))] : undefined;
}

function attributeFields(a: AuditAttributes | undefined): Pick<AuditEntry, "verb" | "apiGroup" | "resource" | "subresource" | "namespace" | "name"> {
  return { verb: clip(a?.verb ?? ""), apiGroup: clip(a?.apiGroup ?? ""), resource: clip(a?.resource ?? ""), subresource: clip(a?.subresource ?? ""), namespace: clip(a?.namespace ?? ""), name: clip(a?.name ?? "") };
}

/** The command of an exec (or attach's container), read from the query kubectl sends; bounded. */
function commandOf(a: AuditAttributes | undefined, search: string): string[] | undefined {
  if (a?.subresource !== "exec" && a?.subresource !== "attach") return undefined;
  const query = new URLSearchParams(search);
  const words = a.subresource === "exec" ? query.getAll("command") : [`attach:${query.get("container") ?? ""}`];
  const out: string[] = [];
  let budget = MAX_COMMAND_BYTES;
  for (let i = 0; i < words.length; i++) {
    const word = clip(words[i]!);
    const size = Buffer.byteLength(word, "utf8");
    if (size > budget) {
      out.push(`${TRUNCATED_MARKER}${words.length - i} more words]`);
      break;
    }
    budget -= size;
    out.push(word);
  }
  return out;
}

interface RefusalBucket {
  windowStart: number;
  written: number;
  suppressed: number;
  lastStatus: number;
}

const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;

/**
 * Appends one JSON line per request that leaves kpass (and per refused one). Lines are batched
 * and written within 200 ms through one open descriptor, so the request path never waits on disk.
 *
 * It cannot be erased from outside: targets and messages are cut to a few KiB, and refusals before
 * authentication (which anyone can cause) are limited per source and overall per window, the rest
 * counted in one summary line per source when the window ends — so a flood cannot rotate the
 * earlier lines away. Write errors are counted (writeErrors) and reported on stderr.
 */
export class AuditLog {
  private written = 0;
  private fd: number | undefined;
  private pending: string[] = [];
  private pendingBytes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private summaryTimer: ReturnType<typeof setTimeout> | undefined;
  private errors = 0;
  private readonly buckets = new Map<string, RefusalBucket>();
  private global = { windowStart: 0, written: 0 };
  private readonly now: () => number;
  private readonly onExit = () => this.close();

  constructor(private readonly options: AuditOptions) {
    this.now = options.now ?? Date.now;
    if (options.path && existsSync(options.path)) this.written = statSync(options.path).size;
    process.on("exit", this.onExit);
  }

  get enabled(): boolean {
    return this.options.path !== undefined || this.options.stdout;
  }

  /** Failed writes (and rotations) so far; each is also reported on stderr. */
  get writeErrors(): number {
    return this.errors;
  }

  private get maxBackups(): number {
    return this.options.maxBackups ?? 10;
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

  private failed(what: string, error: unknown): void {
    this.errors++;
    logger.error(`audit log ${what} failed`, { auditWriteErrors: this.errors, error: (error as Error).message });
  }

  /**
   * Writes summaries of rate-limit windows that have ended, then what is pending, rotating first
   * when the file would pass maxBytes.
   */
  flush(): void {
    this.summarizeEnded(false);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const path = this.options.path;
    if (!path || this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    // The usual case, a batch that fits in the current file, is one write: a write per line was
    // one system call per request under load. Only a batch that rotates goes line by line.
    if (lines.length > 1) {
      const batch = lines.join("");
      const bytes = Buffer.byteLength(batch);
      if (this.written + bytes <= this.options.maxBytes) {
        try {
          this.fd ??= openSync(path, "a", 0o600);
          writeSync(this.fd, batch);
          this.written += bytes;
        } catch (error) {
          this.failed(`write to ${path} (${lines.length} line(s) lost)`, error);
          this.reopenLater();
        }
        return;
      }
    }
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      try {
        if (this.written + Buffer.byteLength(line) > this.options.maxBytes && this.written > 0) this.rotate(path);
      } catch (error) {
        this.failed(`rotation of ${path}`, error);
      }
      try {
        this.fd ??= openSync(path, "a", 0o600);
        writeSync(this.fd, line);
        this.written += Buffer.byteLength(line);
      } catch (error) {
        this.failed(`write to ${path} (${lines.length - i} line(s) lost)`, error);
        this.reopenLater();
        return;
      }
    }
  }

  /** Reopen next time: the file may have been removed or the disk freed. */
  private reopenLater(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already reported the write failure
      }
    }
    this.fd = undefined;
  }

  /** Writes everything, summaries of open windows included, and closes the file. */
  close(): void {
    this.summarizeEnded(true);
    this.flush();
    if (this.summaryTimer) clearTimeout(this.summaryTimer);
    this.summaryTimer = undefined;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    process.off("exit", this.onExit);
  }

  /** `<path>` → `<path>.1` → … → `<path>.<maxBackups>`; the oldest beyond maxBackups is removed. */
  private rotate(path: string): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.written = 0;
    const max = this.maxBackups;
    let top: number;
    if (max > 0) {
      for (let extra = max + 1; existsSync(`${path}.${extra}`); extra++) rmSync(`${path}.${extra}`, { force: true });
      rmSync(`${path}.${max}`, { force: true });
      top = max - 1;
    } else {
      top = 0;
      while (existsSync(`${path}.${top + 1}`)) top++;
    }
    for (let i = top; i >= 1; i--) if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    renameSync(path, `${path}.1`);
  }

  /**
   * One line for `event`. Refusals before authentication (no pass) are limited per source IP; the
   * rest of them are counted into a summary line.
   */
  record(event: AuditEvent): void {
    if (!this.enabled) return;
    if (event.pass === "" && !this.admitUnauthenticated(event.sourceIP, event.status)) return;
    const q = event.target.indexOf("?");
    const search = q < 0 ? "" : event.target.slice(q, q + MAX_TARGET_BYTES);
    const a = event.attributes;
    this.write({
      time: new Date(this.now()).toISOString(),
      pass: clip(event.pass),
      user: clip(event.user),
      cluster: clip(event.cluster),
      // Field by field rather than spreading attributeFields(): no object built per line only to be copied.
      verb: clip(a?.verb ?? ""),
      apiGroup: clip(a?.apiGroup ?? ""),
      resource: clip(a?.resource ?? ""),
      subresource: clip(a?.subresource ?? ""),
      namespace: clip(a?.namespace ?? ""),
      name: clip(a?.name ?? ""),
      path: truncateField(event.target, MAX_TARGET_BYTES),
      status: event.status,
      bytesIn: event.bytesIn,
      bytesOut: event.bytesOut,
      durationMs: event.startedAt === undefined ? 0 : Math.round((performance.now() - event.startedAt) * 100) / 100,
      command: commandOf(event.attributes, search),
      impersonated: event.impersonated === undefined ? undefined : clip(event.impersonated),
      message: event.message === undefined ? undefined : truncateField(event.message, MAX_MESSAGE_BYTES),
      sourceIPs: sourceIPs(event.sourceIP),
      clientCertificateSerial: event.clientCertificateSerial === undefined ? undefined : clip(event.clientCertificateSerial),
      issuedCertificate: event.issuedCertificate && { pass: clip(event.issuedCertificate.pass), serial: clip(event.issuedCertificate.serial), notAfter: clip(event.issuedCertificate.notAfter) },
    });
  }

  /** Whether this refusal before authentication gets its own line; if not, it is counted for the source's summary. */
  private admitUnauthenticated(source: string | undefined, status: number): boolean {
    const now = this.now();
    const windowMs = this.options.refusalWindowMs ?? 1000;
    this.summarizeEnded(false);
    let key = source ? sourceIPOf(source) : "";
    if (!this.buckets.has(key) && this.buckets.size >= MAX_TRACKED_SOURCES) key = OTHER_SOURCES;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { windowStart: now, written: 0, suppressed: 0, lastStatus: status };
      this.buckets.set(key, bucket);
    }
    if (now - this.global.windowStart >= windowMs) this.global = { windowStart: now, written: 0 };
    bucket.lastStatus = status;
    if (bucket.written < this.perSource) {
      if (this.global.written < this.total) {
        bucket.written++;
        this.global.written++;
        return true;
      }
      // Over the total: counted together, so that many sources cannot each earn a summary line.
      bucket = this.buckets.get(OTHER_SOURCES) ?? { windowStart: now, written: this.perSource, suppressed: 0, lastStatus: status };
      this.buckets.set(OTHER_SOURCES, bucket);
      bucket.lastStatus = status;
    }
    bucket.suppressed++;
    this.scheduleSummaries(windowMs);
    return false;
  }

  private get perSource(): number {
    return this.options.unauthenticatedRefusalsPerSource ?? 10;
  }

  private get total(): number {
    return this.options.unauthenticatedRefusalsTotal ?? 50;
  }

  private scheduleSummaries(windowMs: number): void {
    if (this.summaryTimer || this.options.now) return; // an injected clock is driven by the caller (flush)
    this.summaryTimer = setTimeout(() => {
      this.summaryTimer = undefined;
      this.summarizeEnded(false);
      if (this.buckets.size > 0) this.scheduleSummaries(windowMs);
    }, windowMs);
    this.summaryTimer.unref?.();
  }

  /** One summary line per source whose window has ended (every open one when `all`) with refusals left out. */
  private summarizeEnded(all: boolean): void {
    if (this.buckets.size === 0) return;
    const now = this.now();
    const windowMs = this.options.refusalWindowMs ?? 1000;
    // Buckets are kept in the order their windows began, so the first one still open ends the sweep.
    for (const [key, bucket] of this.buckets) {
      if (!all && now - bucket.windowStart < windowMs) break;
      this.buckets.delete(key);
      if (bucket.suppressed === 0) continue;
      const end = Math.min(now, bucket.windowStart + windowMs);
      this.write({
        time: new Date(end).toISOString(),
        pass: "",
        user: "",
        cluster: "",
        ...attributeFields(undefined),
        path: "",
        status: bucket.lastStatus,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: end - bucket.windowStart,
        message: `${bucket.suppressed} more refusal(s) before authentication from ${key === "" ? "an unknown source" : key === OTHER_SOURCES ? "sources over the total allowance" : key} in ${end - bucket.windowStart} ms were not written one by one (audit rate limit: ${this.perSource} per source, ${this.total} in all, per ${windowMs} ms)`,
        sourceIPs: key === "" || key === OTHER_SOURCES ? undefined : [clip(key)],
        suppressed: bucket.suppressed,
      });
    }
  }
}
