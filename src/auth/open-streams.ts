import type { ObjectStore } from "../store/object-store.ts";
import type { Identity } from "./identity.ts";
import { ApiError } from "../core/status.ts";
import { passExpired, type Pass } from "../core/pass.ts";

/** A long-lived stream's hold on its pass: `signal` aborts when the pass no longer allows it. */
export interface StreamLease {
  signal: AbortSignal;
  release(): void;
}

interface Entry {
  identity: Identity;
  /** The pass as it was when the stream opened: any later edit re-decides the stream. */
  version: string;
  /** When the credential that opened the stream ends (a client certificate's notAfter), if it does. */
  notAfter?: number;
  kind: StreamKind;
  abort: AbortController;
}

/** Watches and log follows end first on shutdown (clients re-watch elsewhere); tunnels last. */
export type StreamKind = "stream" | "tunnel";

export interface OpenStreamsOptions {
  /** Concurrent watches and tunnels one pass may hold (0: unbounded). */
  maxPerPass: number;
  /** How often expiry is re-checked; edits and deletions are seen at once. */
  sweepMs?: number;
}

function versionOf(pass: Pass): string {
  return `${pass.metadata.uid}/${pass.metadata.generation ?? pass.metadata.resourceVersion}`;
}

/**
 * Every open watch, log follow and tunnel, by pass. Deleting, expiring, re-creating or editing a
 * pass ends its streams (within one sweep at most): a client that reconnects is authorized anew,
 * so a narrowed pass keeps only what it may still do. Also bounds the streams per pass.
 */
export class OpenStreams {
  private readonly byPass = new Map<string, Set<Entry>>();
  /** Streams of host users (aggregated mode): no pass revokes them; shutdown ends them like the rest. */
  private readonly hostStreams = new Set<Entry>();
  /** Host users' streams by user name, for the same bound per person as a pass has. */
  private readonly byHostUser = new Map<string, Set<Entry>>();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly passes: ObjectStore<Pass>,
    private readonly options: OpenStreamsOptions,
  ) {
    passes.subscribe((event) => this.sweep(event.object.metadata.name));
    this.timer = setInterval(() => this.sweepAll(), options.sweepMs ?? 500);
    this.timer.unref?.();
  }

  /** The bound per pass from now on (a reload); streams already open over it are left alone. */
  setMaxPerPass(max: number): void {
    this.options.maxPerPass = max;
  }

  get size(): number {
    let n = 0;
    for (const set of this.byPass.values()) n += set.size;
    return n + this.hostStreams.size;
  }

  /**
   * Takes a lease for a new stream, or refuses it (revoked pass, or the pass's bound reached).
   * `notAfter` (ms): the stream also ends when the credential it was opened with expires.
   */
  lease(identity: Identity, notAfter?: number, kind: StreamKind = "stream"): StreamLease {
    const pass = this.passes.get(identity.pass);
    if (!pass || pass.metadata.uid !== identity.passUid) throw new ApiError(401, "Unauthorized", `Unauthorized: pass "${identity.pass}" has been revoked`);
    const set = this.byPass.get(identity.pass) ?? new Set<Entry>();
    if (this.options.maxPerPass > 0 && set.size >= this.options.maxPerPass) {
      throw new ApiError(429, "TooManyRequests", `pass "${identity.pass}" already holds ${set.size} open watches and tunnels (the limit per pass)`, { retryAfterSeconds: 10 });
    }
    const entry: Entry = { identity, version: versionOf(pass), notAfter, kind, abort: new AbortController() };
    set.add(entry);
    this.byPass.set(identity.pass, set);
    return {
      signal: entry.abort.signal,
      release: () => {
        set.delete(entry);
        if (set.size === 0 && this.byPass.get(identity.pass) === set) this.byPass.delete(identity.pass);
      },
    };
  }

  /** A lease for a host user's stream: not bound per pass (the host has its own limits), ended on shutdown. */
  leaseHost(identity: Identity, kind: StreamKind = "stream"): StreamLease {
    const mine = this.byHostUser.get(identity.user) ?? new Set<Entry>();
    if (this.options.maxPerPass > 0 && mine.size >= this.options.maxPerPass) {
      throw new ApiError(429, "TooManyRequests", `user "${identity.user}" already holds ${mine.size} open watches and tunnels (the limit per person)`, { retryAfterSeconds: 10 });
    }
    const entry: Entry = { identity, version: "", notAfter: undefined, kind, abort: new AbortController() };
    this.hostStreams.add(entry);
    mine.add(entry);
    this.byHostUser.set(identity.user, mine);
    const release = () => {
      this.hostStreams.delete(entry);
      mine.delete(entry);
      if (mine.size === 0 && this.byHostUser.get(identity.user) === mine) this.byHostUser.delete(identity.user);
    };
    return { signal: entry.abort.signal, release };
  }

  /** Ends every open stream of `kind` (shutdown); returns how many it ended. */
  endAll(kind: StreamKind, reason: string): number {
    let ended = 0;
    for (const entry of [...this.hostStreams]) {
      if (entry.kind !== kind) continue;
      this.hostStreams.delete(entry);
      this.byHostUser.get(entry.identity.user)?.delete(entry);
      entry.abort.abort(new ApiError(503, "ServiceUnavailable", reason));
      ended++;
    }
    for (const [name, set] of this.byPass) {
      for (const entry of [...set]) {
        if (entry.kind !== kind) continue;
        set.delete(entry);
        entry.abort.abort(new ApiError(503, "ServiceUnavailable", reason));
        ended++;
      }
      if (set.size === 0) this.byPass.delete(name);
    }
    return ended;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sweepAll(): void {
    for (const name of [...this.byPass.keys()]) this.sweep(name);
  }

  private sweep(name: string): void {
    const set = this.byPass.get(name);
    if (!set) return;
    const pass = this.passes.get(name);
    const now = Date.now();
    const expired = pass !== undefined && passExpired(pass, now);
    const current = pass && !expired ? versionOf(pass) : undefined;
    for (const entry of [...set]) {
      const credentialExpired = entry.notAfter !== undefined && entry.notAfter <= now;
      if (entry.version === current && !credentialExpired) continue;
      set.delete(entry);
      entry.abort.abort(new ApiError(401, "Unauthorized", credentialExpired ? `the client certificate of pass "${name}" expired` : `pass "${name}" was revoked or changed`));
    }
    if (set.size === 0) this.byPass.delete(name);
  }
}
