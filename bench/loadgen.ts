/**
 * Fallback load generator (used only when `wrk` is not installed): N concurrent keep-alive GET
 * loops with Bun's fetch for a fixed time, in its own process so it does not share the event
 * loop of what it measures. Bounded: stops after --duration seconds or --max-requests requests.
 *
 * Run: bun bench/loadgen.ts --url URL --token T --ca FILE --connections 32 --duration 5
 *      (or --cert FILE --key FILE: a client certificate instead of a token; --new-connections: no keep-alive)
 * Prints one JSON line: {"requests", "errors", "non2xx", "seconds", "rps", "p50Ms", "p99Ms"}.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string", default: "" },
    ca: { type: "string" },
    connections: { type: "string", default: "1" },
    duration: { type: "string", default: "5" },
    "max-requests": { type: "string", default: "5000000" },
    cert: { type: "string" },
    key: { type: "string" },
    "new-connections": { type: "boolean", default: false },
    // Extra request headers, NAME:VALUE (repeatable): the X-Remote-* a front proxy sends.
    header: { type: "string", multiple: true, default: [] },
  },
});
if (!values.url) throw new Error("--url is required");
const url = values.url;
const ca = values.ca ? readFileSync(values.ca, "utf8") : undefined;
const extraHeaders = (values.header ?? []).map((h) => [h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1)] as [string, string]);
const headers = values.token || extraHeaders.length > 0 ? { ...(values.token ? { authorization: `Bearer ${values.token}` } : {}), ...Object.fromEntries(extraHeaders) } : undefined;
const connections = Number(values.connections);
const durationMs = Number(values.duration) * 1000;
const maxRequests = Number(values["max-requests"]);
const cert = values.cert ? readFileSync(values.cert, "utf8") : undefined;
const key = values.key ? readFileSync(values.key, "utf8") : undefined;
const tls = ca || cert ? { ca, cert, key } : undefined;
const keepalive = !values["new-connections"];

const latencies = new Float64Array(Math.min(maxRequests, 20_000_000));
let count = 0;
let errors = 0;
let non2xx = 0;
const start = performance.now();
const deadline = start + durationMs;

async function loop(): Promise<void> {
  while (performance.now() < deadline && count < maxRequests) {
    const t0 = performance.now();
    try {
      const response = await fetch(url, { headers, tls, keepalive });
      await response.arrayBuffer();
      if (response.status < 200 || response.status >= 300) non2xx++;
    } catch {
      errors++;
    }
    if (count < latencies.length) latencies[count] = performance.now() - t0;
    count++;
  }
}

await Promise.all(Array.from({ length: connections }, loop));
const seconds = (performance.now() - start) / 1000;
const recorded = latencies.subarray(0, Math.min(count, latencies.length)).sort();
const pct = (p: number) => (recorded.length ? recorded[Math.min(recorded.length - 1, Math.floor((p / 100) * recorded.length))]! : 0);
console.log(JSON.stringify({ requests: count, errors, non2xx, seconds, rps: count / seconds, p50Ms: pct(50), p99Ms: pct(99) }));
