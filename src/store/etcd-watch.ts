/**
 * One etcd watch over the gateway's streaming `/v3/watch`, kept alive across disconnects: each
 * reconnect starts after the last revision delivered, so no event is lost or repeated.
 */
import type { EtcdTransport } from "./etcd-transport.ts";
import {
  decodeEvent,
  EtcdError,
  int64,
  JsonObjectSplitter,
  prefixEnd,
  toBase64,
  type WatchEvent,
  type WireStreamMessage,
  type WireWatchResult,
} from "./etcd-wire.ts";

export interface WatchHandlers {
  /**
   * Events in revision order, and the revision they bring the watch up to (the last event's
   * mod_revision). A progress notification calls it with no events and the store's revision.
   * Handlers must not throw: an exception counts as a broken stream and the watch reconnects.
   */
  events(events: WatchEvent[], revision: number): void;
  /** The start revision was compacted away; the watch has stopped. */
  compacted(compactRevision: number): void;
  /** The stream went up (created) or down (with why); reported on changes only. */
  connection?(up: boolean, error?: Error): void;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2000;

/** Thrown inside the loop to end it quietly (stop, or compaction already reported). */
class Finished extends Error {}

export function startWatch(transport: EtcdTransport, prefix: string, fromRevision: number, handlers: WatchHandlers): { stop(): void } {
  let next = fromRevision; // the first revision not yet delivered (0: "from now", until created says what now is)
  let stopped = false;
  let up: boolean | undefined;
  let controller: AbortController | undefined;
  let wake: (() => void) | undefined;

  const report = (state: boolean, error?: Error): void => {
    if (up === state) return;
    up = state;
    handlers.connection?.(state, error);
  };

  const onResult = (result: WireWatchResult): void => {
    if (result.canceled) {
      if (result.compact_revision !== undefined) {
        stopped = true;
        handlers.compacted(int64(result.compact_revision));
        throw new Finished();
      }
      throw new EtcdError(`etcd: watch canceled: ${result.cancel_reason ?? "no reason given"}`, 1, 200);
    }
    const headerRevision = int64(result.header?.revision);
    if (result.created) {
      if (next <= 0) next = headerRevision + 1;
      report(true);
      return;
    }
    const events = (result.events ?? []).map(decodeEvent).filter((e) => e.kv.modRevision >= next);
    if (events.length > 0) {
      const revision = events[events.length - 1]!.kv.modRevision;
      next = revision + 1;
      handlers.events(events, revision);
    } else if (result.events === undefined && headerRevision >= next - 1) {
      // A progress notification: sent only to a synced watcher, so nothing up to it is pending.
      next = headerRevision + 1;
      handlers.events([], headerRevision);
    }
  };

  const streamOnce = async (index: number): Promise<void> => {
    controller = new AbortController();
    const request = {
      create_request: { key: toBase64(prefix), range_end: toBase64(prefixEnd(prefix)), start_revision: String(Math.max(next, 0)), progress_notify: true, prev_kv: true },
    };
    const response = await transport.open(index, "/v3/watch", request, controller.signal);
    if (!response.body) throw new Error("etcd: watch reply has no body");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const splitter = new JsonObjectSplitter();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) throw new Error("etcd: watch stream ended");
        for (const text of splitter.push(decoder.decode(value, { stream: true }))) {
          const message = JSON.parse(text) as WireStreamMessage<WireWatchResult>;
          if (message.error) throw new EtcdError(`etcd: watch: ${message.error.message ?? "stream error"}`, message.error.grpc_code ?? 2, message.error.http_code ?? 200);
          if (message.result) onResult(message.result);
          if (stopped) throw new Finished();
        }
      }
    } finally {
      controller.abort();
    }
  };

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const loop = async (): Promise<void> => {
    let index = transport.next();
    let failures = 0;
    while (!stopped) {
      try {
        await streamOnce(index);
      } catch (error) {
        if (stopped || error instanceof Finished) return;
        const err = error instanceof Error ? error : new Error(String(error));
        // A stream that was up counts as a fresh start: the first retry comes after the minimum wait.
        if (up) failures = 0;
        report(false, err);
        index = transport.next(index);
        await sleep(Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** failures));
        failures++;
      }
    }
  };

  void loop();
  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      controller?.abort();
      wake?.();
    },
  };
}
