/**
 * SIGHUP with a config file: the file is read again; what can change in a running kpass does
 * (log format and level, streams per pass), and what needs a restart is named in the log, not
 * silently ignored. A file that no longer loads changes nothing.
 */
import { configureLog, logger } from "../core/log.ts";
import { parseServeArgs, SERVE_OPTIONS, type OptionKey, type ServeOptions } from "./serve-options.ts";

const LIVE: ReadonlySet<OptionKey> = new Set<OptionKey>(["logFormat", "logLevel", "maxStreamsPerPass"]);

export interface Reloadable {
  applySettings(settings: { maxStreamsPerPass: number }): void;
}

/** Re-reads `args` (flags and --config); returns the options now in force. */
export function reloadSettings(args: string[], current: ServeOptions, server: Reloadable): ServeOptions {
  let next: ServeOptions;
  try {
    next = parseServeArgs(args).options;
  } catch (error) {
    logger.error(`config not reloaded, the settings in force stay: ${(error as Error).message}`);
    return current;
  }
  const changed = (Object.keys(SERVE_OPTIONS) as OptionKey[]).filter((key) => JSON.stringify(next[key]) !== JSON.stringify(current[key]));
  const live = changed.filter((key) => LIVE.has(key));
  const later = changed.filter((key) => !LIVE.has(key));
  configureLog({ format: next.logFormat, level: next.logLevel });
  server.applySettings({ maxStreamsPerPass: next.maxStreamsPerPass });
  if (live.length > 0) logger.info(`kpass: config reloaded: ${live.join(", ")} changed`);
  if (later.length > 0) logger.warn(`config: ${later.join(", ")} changed, which takes effect at the next start`);
  // What is in force: the new live settings, the old ones for everything that needs a restart.
  const inForce = { ...current };
  for (const key of live) (inForce as Record<string, unknown>)[key] = next[key];
  return inForce;
}
