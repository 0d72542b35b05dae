/**
 * A serving certificate given as files (--tls-cert/--tls-key) is taken up when the files change,
 * as with SIGHUP: cert-manager, certbot and friends rewrite files, they do not signal processes.
 */
import { watch, type FSWatcher } from "node:fs";
import { dirname } from "node:path";
import { logger } from "../core/log.ts";

/** A rewrite touches the files a few times in a row (cert, then key): reload once it settles. */
const SETTLE_MS = 300;

export function watchCertificateFiles(files: string[], reload: () => Promise<void>): { stop(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const names = new Set(files.map((f) => f.slice(dirname(f).length + 1)));
  const changed = (file: string | null) => {
    if (file !== null && !names.has(file)) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      reload().then(
        () => logger.info("kpass: serving certificate reloaded (files changed)"),
        (error: Error) => logger.error(`serving certificate files changed but were not taken up, the old certificate stays: ${error.message}`),
      );
    }, SETTLE_MS);
  };
  // Directories, not files: an atomic rename replaces the file a watch on it would follow.
  const watchers: FSWatcher[] = [...new Set(files.map(dirname))].map((dir) => watch(dir, (_event, file) => changed(file)));
  for (const w of watchers) w.unref();
  return {
    stop() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
