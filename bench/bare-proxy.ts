/**
 * Bare reverse proxies with kpass's shape but none of its logic (no authn/authz, no header
 * hygiene, no audit, no metrics), to split kpass's cost into "architecture" and "request logic":
 *
 *   --mode serve   Bun.serve (TLS) → fetch() to the upstream
 *   --mode edge    kpass's own TLS edge (src/edge/listener.ts, Bun.listen) spliced to Bun.serve on
 *                  a unix socket → fetch() to the upstream; the shape kpass runs
 *
 * Both send every request to the upstream with its bearer token, through one Bun.FetchSession
 * (one keep-alive pool), body streamed, no decompression — as kpass does.
 *
 * Run: bun bench/bare-proxy.ts --mode serve|edge --upstream URL --ca FILE --token T --dir DIR
 * Prints one JSON line on stdout: {"url": "...", "caFile": "..."}.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startEdge } from "../src/edge/listener.ts";
import { createCertificateAuthority, issueServingCertificate } from "../src/edge/pki.ts";

const { values } = parseArgs({
  options: {
    mode: { type: "string", default: "serve" },
    upstream: { type: "string" },
    ca: { type: "string" },
    token: { type: "string" },
    dir: { type: "string" },
    // Adds what kpass's src/proxy/forward.ts does around fetch(): an AbortController whose
    // signal goes to fetch, a listener on the client request's signal, a header timer.
    "abort-signal": { type: "boolean", default: false },
    // Wraps every response body in a byte-counting TransformStream, as kpass's audit log does
    // (src/proxy/response-meter.ts).
    "count-bytes": { type: "boolean", default: false },
  },
});
if (!values.upstream || !values.ca || !values.token || !values.dir) throw new Error("--upstream, --ca, --token and --dir are required");
const upstream = values.upstream;
const authorization = `Bearer ${values.token}`;
const session = new Bun.FetchSession({ tls: { ca: readFileSync(values.ca, "utf8") }, keepAlive: { idleTimeout: 90 } });
const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding", "content-length"];

const withSignal = values["abort-signal"];
let countedBytes = 0;

async function handler(req: Pick<Request, "method" | "headers" | "signal">, target: string): Promise<Response> {
  const init: RequestInit & { decompress: boolean } = { method: req.method, headers: { authorization, accept: req.headers.get("accept") ?? "*/*" }, decompress: false, redirect: "manual" };
  let done = () => {};
  if (withSignal) {
    const abort = new AbortController();
    const onClientAbort = () => abort.abort();
    req.signal.addEventListener("abort", onClientAbort, { once: true });
    const timer = setTimeout(() => abort.abort(), 15_000);
    init.signal = abort.signal;
    done = () => clearTimeout(timer);
  }
  const upstreamResponse = await session.fetch(`${upstream}${target}`, init);
  done();
  const headers = new Headers(upstreamResponse.headers);
  for (const name of HOP_BY_HOP) headers.delete(name);
  if (values["count-bytes"] && upstreamResponse.body) {
    let bytes = 0;
    const counted = upstreamResponse.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          bytes += chunk.byteLength;
          controller.enqueue(chunk);
        },
        flush() {
          countedBytes += bytes;
        },
      }),
    );
    return new Response(counted, { status: upstreamResponse.status, headers });
  }
  return new Response(upstreamResponse.body, { status: upstreamResponse.status, headers });
}

const ca = await createCertificateAuthority(`kpass-bench-bare-${values.mode}-ca`);
const serving = await issueServingCertificate(ca, { commonName: "bare-proxy", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
const caFile = join(values.dir, `bare-${values.mode}-ca.crt`);
writeFileSync(caFile, ca.certPem);

let url: string;
let stop: () => void;
if (values.mode === "serve") {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: serving.certPem, key: serving.keyPem }, idleTimeout: 120, fetch: (req) => handler(req, req.url.slice(req.url.indexOf("/", 8))) });
  url = `https://127.0.0.1:${server.port}`;
  stop = () => server.stop(true);
} else if (values.mode === "edge") {
  // The same edge kpass uses (own framing, in-process handler), without kpass's request path.
  const edge = startEdge({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: serving.certPem, key: serving.keyPem },
    handle: (req, context) => handler(req, context.target),
    upgrade: async (_head, _context, client) =>
      client.respond(Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", code: 400, reason: "BadRequest", message: "no upgrades here" }, { status: 400 })),
  });
  url = `https://127.0.0.1:${edge.port}`;
  stop = () => edge.stop();
} else {
  throw new Error(`--mode must be serve or edge, not ${values.mode}`);
}

console.log(JSON.stringify({ url, caFile }));
const shutdown = () => {
  stop();
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
