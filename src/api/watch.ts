import type { ObjectStore } from "../store/object-store.ts";
import type { StoreEvent, StoredObject } from "../core/object.ts";
import { asApiError } from "../core/status.ts";

export interface WatchOptions<T extends StoredObject> {
  fromRevision: number | undefined;
  /** Turns an event's object into what the client sees, or undefined to skip the event. */
  present(object: T): unknown;
  timeoutSeconds?: number;
  signal: AbortSignal;
  /** Runs once when the stream ends, however it ends. */
  onEnd?: () => void;
}

const encoder = new TextEncoder();

/**
 * A Kubernetes watch stream: one JSON event per line, flushed as it happens, until the client goes
 * away or timeoutSeconds pass. An event that cannot start (410 Gone) is sent as an ERROR event.
 */
export function watchResponse<T extends StoredObject>(store: ObjectStore<T>, options: WatchOptions<T>): Response {
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const send = (event: StoreEvent<T>) => {
        const object = options.present(event.object);
        if (object === undefined) return;
        controller.enqueue(encoder.encode(JSON.stringify({ type: event.type, object }) + "\n"));
      };
      let watch: { stop(): void } | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let ended = false;
      const finish = () => {
        if (!ended) {
          ended = true;
          options.onEnd?.();
        }
        watch?.stop();
        if (timer) clearTimeout(timer);
        options.signal.removeEventListener("abort", finish);
      };
      stop = finish;
      const close = () => {
        finish();
        try {
          controller.close();
        } catch {
          // already closed
        }
      };
      try {
        // The store ends the watch when its feed had to start over: the client re-lists, as after a 410.
        watch = store.watch(options.fromRevision, send, close);
      } catch (error) {
        controller.enqueue(encoder.encode(JSON.stringify({ type: "ERROR", object: asApiError(error).toStatus() }) + "\n"));
        controller.close();
        finish();
        return;
      }
      // The client went away or the pass was revoked: end the stream (a revoked client re-watches and is refused).
      options.signal.addEventListener("abort", close, { once: true });
      if (options.timeoutSeconds && options.timeoutSeconds > 0) {
        timer = setTimeout(close, options.timeoutSeconds * 1000);
      }
    },
    cancel() {
      stop();
    },
  });
  return new Response(body, {
    headers: { "content-type": "application/json", "cache-control": "no-cache, private", "x-content-type-options": "nosniff" },
  });
}
