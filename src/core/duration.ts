/** Durations as Kubernetes and Go write them: "720h" in, "5m10s" out. */

const DURATION_PART = /(\d+(?:\.\d+)?)(h|m|s|d)/g;

/** Parses "720h", "1h30m", "90s", "30d" into milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(h|m|s|d))+$/.test(text)) return undefined;
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 } as const;
  let total = 0;
  for (const [, n, u] of text.matchAll(DURATION_PART)) total += Number(n) * unit[u as keyof typeof unit];
  return total;
}

/** Kubernetes' short human durations: 45s, 5m10s, 3h, 2d5h, 400d. */
export function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (days < 365 * 2) return `${days}d`;
  return `${Math.floor(days / 365)}y`;
}

/** The AGE column: time since `timestamp`. */
export function humanAge(timestamp: string, now: number): string {
  return humanDuration(now - Date.parse(timestamp));
}
