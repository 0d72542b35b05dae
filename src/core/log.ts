/**
 * kpass's own log (not the audit log): one line per event on stderr, as text for people or as one
 * JSON object per line for a log pipeline (`--log-format json`). Messages never carry a token or
 * a key; requests are in the audit log, not here.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

let format: LogFormat = "text";
let threshold: LogLevel = "info";
let sink: (line: string) => void = (line) => process.stderr.write(line);

export function configureLog(options: { format?: LogFormat; level?: LogLevel; sink?: (line: string) => void }): void {
  format = options.format ?? format;
  threshold = options.level ?? threshold;
  sink = options.sink ?? sink;
}

function fieldValue(value: unknown): unknown {
  if (value instanceof Error) return format === "json" ? { message: value.message, stack: value.stack } : (value.stack ?? value.message);
  return value;
}

function textFields(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([k, v]) => {
      const value = fieldValue(v);
      return `${k}=${typeof value === "string" && !/[\s"=]/.test(value) ? value : JSON.stringify(value)}`;
    })
    .join(" ");
}

export function log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
  if (RANK[level] < RANK[threshold]) return;
  if (format === "json") {
    const entry: Record<string, unknown> = { time: new Date().toISOString(), level, msg: message };
    for (const [k, v] of Object.entries(fields)) entry[k] = fieldValue(v);
    sink(JSON.stringify(entry) + "\n");
    return;
  }
  // Informational lines read as sentences; warnings and errors say who is speaking.
  const prefix = level === "info" || level === "debug" ? "" : "kpass: ";
  const rest = Object.keys(fields).length > 0 ? ` ${textFields(fields)}` : "";
  sink(`${prefix}${message}${rest}\n`);
}

export const logger = {
  debug: (message: string, fields?: Record<string, unknown>) => log("debug", message, fields),
  info: (message: string, fields?: Record<string, unknown>) => log("info", message, fields),
  warn: (message: string, fields?: Record<string, unknown>) => log("warn", message, fields),
  error: (message: string, fields?: Record<string, unknown>) => log("error", message, fields),
};
