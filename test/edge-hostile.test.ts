/**
 * kpass's hostile-input corpus: raw bytes over TLS to a running kpass in front of two raw test
 * clusters ("a" and "b", test/fixture/raw-cluster.ts, which frame HTTP/1.1 like Go's net/http and
 * record every request and every byte they receive).
 *
 * One table of cases, one loop (like Hono's router/common.case.test.ts). Each case says what to
 * write, which responses must come back in order (status + Status reason, or the Probe of which
 * cluster), whether the connection must then be closed or still be usable, and how many requests
 * each cluster may have recorded. Invariants checked after every case:
 *
 * - every error response (≥ 400) is a JSON Status whose `code` equals the HTTP status;
 * - cluster b's body (`"cluster":"b"`) appears only in responses the case expects from b;
 * - no cluster ever records a target with a dot segment (decoded once, split on / and \) and no
 *   request whose target carries the SMUGGLED marker;
 * - every recorded request carries exactly one Authorization, the Cluster's stored bearer token,
 *   and none of the identity headers a client could use to claim an identity;
 * - a normal GET on a NEW connection still gets cluster a's answer.
 *
 * The expectations are the edge SPEC (strict framing, dot segments refused, upgrades tunnelled
 * only to exec/attach/portforward/proxy subresources), not whatever kpass does today.
 *
 * Run: node_modules/.bin/bun test test/edge-hostile.test.ts --timeout 120000
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from "jose";
import { refusedPort, startBlackhole, startRawCluster, type RawCluster, type RawRecordedRequest } from "./fixture/raw-cluster.ts";
import type { TestCluster } from "./fixture/cluster/server.ts";
import { clusterManifest, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";
import { RawTlsConnection, type RawResponse } from "./harness/raw-tls.ts";

const G = "/apis/cluster.kpass.dev/v1beta1";
const CLUSTERS = `${G}/clusters`;
const PASSES = `${G}/passes`;
const A = `${CLUSTERS}/a/proxy`;
const B = `${CLUSTERS}/b/proxy`;
const TOKEN_A = `token-a-${crypto.randomUUID()}`;
const TOKEN_B = `token-b-${crypto.randomUUID()}`;
const TOKEN_F = `token-f-${crypto.randomUUID()}`;
/** Marker in every request that must never reach a cluster as a request of its own. */
const SMUGGLED = "SMUGGLED";

type Who = "admin" | "nobody" | "aOnly" | "aEdit" | "gonePass" | "forged" | "expired" | "expiredTampered" | "algNone" | "tampered";

interface Ctx {
  kpass: KpassProcess;
  a: RawCluster;
  b: RawCluster;
  tokens: Record<Who, string>;
}

let ctx: Ctx;
let faulty: RawCluster;
let hole: ReturnType<typeof startBlackhole>;

// -------------------------------------------------------------------------------------------------
// request builders (strings are written as latin1: one char = one byte)

type Build = (c: Ctx) => string;
type Bytes = string | Uint8Array;

interface ReqOptions {
  /** Whose token goes in Authorization; null = none. Default admin. */
  who?: Who | null;
  /** Extra header lines, verbatim (no CRLF). */
  headers?: string[];
  body?: string;
  /** Send the body chunked (Transfer-Encoding: chunked), in pieces of this many bytes. */
  chunked?: number;
  /** Do not add Content-Length for the body. */
  noLength?: boolean;
  version?: string;
  /** Host header value; null = none. Default localhost. */
  host?: string | null;
}

function chunk(body: string, size: number): string {
  let out = "";
  for (let i = 0; i < body.length; i += size) {
    const piece = body.slice(i, i + size);
    out += `${piece.length.toString(16)}\r\n${piece}\r\n`;
  }
  return `${out}0\r\n\r\n`;
}

function rq(method: string, target: string, o: ReqOptions = {}): Build {
  return (c) => {
    const lines = [`${method} ${target} ${o.version ?? "HTTP/1.1"}`];
    if (o.host !== null) lines.push(`Host: ${o.host ?? "localhost"}`);
    const who = o.who === undefined ? "admin" : o.who;
    if (who !== null) lines.push(`Authorization: Bearer ${c.tokens[who]}`);
    lines.push(...(o.headers ?? []));
    let body = o.body ?? "";
    if (o.chunked !== undefined) {
      lines.push("Transfer-Encoding: chunked");
      body = chunk(body, o.chunked);
    } else if (o.body !== undefined && !o.noLength) lines.push(`Content-Length: ${Buffer.byteLength(body, "latin1")}`);
    return `${lines.join("\r\n")}\r\n\r\n${body}`;
  };
}

const get = (target: string, o: ReqOptions = {}) => rq("GET", target, o);
const cat = (...builds: (Build | string)[]): Build => (c) => builds.map((b) => (typeof b === "string" ? b : b(c))).join("");
/** A request whose head lines are given verbatim; `{admin}` etc. are replaced by tokens. */
const verbatim = (text: string): Build => (c) => text.replace(/\{(\w+)\}/g, (_, who: string) => c.tokens[who as Who] ?? `{${who}}`);

const SPDY = ["Connection: Upgrade", "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"];
const WS_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT = createHash("sha1").update(`${WS_KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
const WS = ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", `Sec-WebSocket-Key: ${WS_KEY}`, "Sec-WebSocket-Protocol: v5.channel.k8s.io"];
const EXEC = `${A}/api/v1/namespaces/default/pods/p/exec`;
const EXEC_Q = `${EXEC}?command=sh&stdin=true&stdout=true`;
const CONFIGMAPS = `${A}/api/v1/namespaces/default/configmaps`;
const SMUGGLED_DELETE = `DELETE /api/v1/namespaces/${SMUGGLED} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN_A}\r\n\r\n`;

// -------------------------------------------------------------------------------------------------
// expectations

interface Want {
  status: number | "any";
  /** The Status reason of an error response. */
  reason?: string;
  /** The response is cluster X's Probe. */
  cluster?: "a" | "b";
  /** …for this target as the cluster received it. */
  path?: string;
  /** Extra check on the JSON body; returns a problem or undefined. */
  json?: (body: any) => string | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const ok = (cluster: "a" | "b", path?: string): Want => ({ status: 200, cluster, path });
const status = (code: number, reason?: string): Want => ({ status: code, reason });
const NOT_FOUND = status(404, "NotFound");
const BAD = status(400, "BadRequest");
const UNAUTHORIZED = status(401, "Unauthorized");
const FORBIDDEN = status(403, "Forbidden");
const TOO_LARGE = status(431);
const ANY: Want = { status: "any" };
const KPASS_VERSION: Want = { status: 200, json: (b) => (typeof b?.gitVersion === "string" ? undefined : `not kpass's /version: ${JSON.stringify(b)?.slice(0, 200)}`) };
const CLUSTER_LIST: Want = { status: 200, json: (b) => (b?.kind === "ClusterList" ? undefined : `not a ClusterList: ${JSON.stringify(b)?.slice(0, 200)}`) };
const SWITCHED = status(101);

interface Got {
  responses: RawResponse[];
  conn: RawTlsConnection;
  tunnel: () => Buffer;
}

interface Case {
  name: string;
  /** Send an admin GET to cluster a first on the same connection and read its answer. */
  prelude?: boolean;
  send: Build | ((c: Ctx) => Bytes[]);
  /** Pause between writes when `send` returns several (default 30 ms). */
  gapMs?: number;
  /** Half-close the connection after writing. */
  endWrite?: boolean;
  /** The responses, in order. */
  want: Want[];
  /** How many of the last `want` entries may be missing (the server may close instead). */
  optionalTail?: number;
  /** After the responses: the connection must be closed (true), must still serve (false), or is a tunnel. */
  closed: boolean | "tunnel";
  /** Requests each cluster must have recorded (prelude included automatically); "any" = not checked. */
  records?: { a?: number | "any"; b?: number | "any" };
  check?: (c: Ctx, got: Got) => string[] | Promise<string[]>;
}

// -------------------------------------------------------------------------------------------------
// invariants

const IDENTITY_PREFIXES = ["impersonate-", "x-remote-", "x-forwarded-"];
const IDENTITY_NAMES = new Set(["forwarded", "x-real-ip", "cookie", "x-client-cert", "remote-user", "x-auth-request-user", "proxy-authorization"]);
const normalizeName = (name: string) => name.toLowerCase().replace(/_/g, "-");
const isIdentityName = (name: string) => {
  const n = normalizeName(name);
  return IDENTITY_NAMES.has(n) || IDENTITY_PREFIXES.some((p) => n.startsWith(p));
};

function percentDecodeOnce(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The SPEC's dot segment: percent-decode once, split on / and \, any "." or "..". */
function hasDotSegment(target: string): boolean {
  const path = target.split("?")[0]!;
  return percentDecodeOnce(path).split(/[/\\]/).some((s) => s === "." || s === "..");
}

/**
 * kpass's own health probe (GET /version, Accept: application/json, on its own schedule) is not
 * part of any case; no case sends an Accept header, so it is told apart by that.
 */
const isProbe = (r: RawRecordedRequest) => r.target === "/version" && r.headers.some(([n, v]) => n.toLowerCase() === "accept" && v === "application/json");
const caseRequests = (cluster: RawCluster) => cluster.requests.filter((r) => !isProbe(r));

function recordedProblems(cluster: RawCluster): string[] {
  const problems: string[] = [];
  for (const r of cluster.requests) {
    const where = `cluster ${cluster.name} recorded ${r.method} ${JSON.stringify(r.target)}`;
    if (hasDotSegment(r.target)) problems.push(`${where}: a dot segment reached the cluster`);
    if (r.target.includes(SMUGGLED) || r.method === "DELETE") problems.push(`${where}: a smuggled request reached the cluster`);
    const auth = r.headers.filter(([n]) => n.toLowerCase() === "authorization").map(([, v]) => v);
    if (auth.length !== 1 || auth[0] !== `Bearer ${cluster.token}`) problems.push(`${where}: Authorization is ${JSON.stringify(auth)}, not exactly the Cluster's token`);
    const leaked = r.headers.map(([n]) => n).filter(isIdentityName);
    if (leaked.length > 0) problems.push(`${where}: identity headers forwarded: ${leaked.join(", ")}`);
  }
  for (const e of cluster.errors) problems.push(`cluster ${cluster.name} could not frame what kpass sent: ${e}`);
  return problems;
}

function responseProblems(responses: RawResponse[], want: Want[]): string[] {
  const problems: string[] = [];
  responses.forEach((r, i) => {
    const w = want[i];
    const label = `response ${i + 1} (${r.status})`;
    if (r.status >= 400) {
      const body = r.json();
      if (!/json/i.test(r.header("content-type") ?? "")) problems.push(`${label}: error without a JSON content type: ${r.header("content-type")}`);
      if (body?.kind !== "Status" || body?.code !== r.status) problems.push(`${label}: error body is not a Status with code ${r.status}: ${r.text.slice(0, 300)}`);
    }
    if (r.text.includes('"cluster":"b"') && w?.cluster !== "b") problems.push(`${label}: cluster b's data in a response not meant for b: ${r.text.slice(0, 300)}`);
    if (!w) return;
    if (w.status !== "any" && r.status !== w.status) problems.push(`${label}: expected status ${w.status}, got ${r.status}: ${r.text.slice(0, 300)}`);
    if (!r.complete) problems.push(`${label}: body cut short`);
    if (w.reason !== undefined && r.json()?.reason !== w.reason) problems.push(`${label}: expected reason ${w.reason}, got ${JSON.stringify(r.json()?.reason)}`);
    if (w.cluster !== undefined) {
      const body = r.json();
      if (body?.kind !== "Probe" || body?.cluster !== w.cluster) problems.push(`${label}: expected cluster ${w.cluster}'s Probe, got ${r.text.slice(0, 300)}`);
      else if (w.path !== undefined && body.path !== w.path) problems.push(`${label}: cluster ${w.cluster} answered for ${JSON.stringify(body.path)}, expected ${JSON.stringify(w.path)}`);
    }
    const extra = w.json?.(r.json());
    if (extra) problems.push(`${label}: ${extra}`);
  });
  return problems;
}

async function open(): Promise<RawTlsConnection> {
  return RawTlsConnection.open(ctx.kpass.url, ctx.kpass.caPem);
}

/** A normal GET on a new connection: kpass still serves cluster a. */
async function healthProblems(): Promise<string[]> {
  let conn: RawTlsConnection | undefined;
  try {
    conn = await open();
    conn.write(get(`${A}/version`)(ctx));
    const { responses } = await conn.responses(1, 10_000);
    const r = responses[0];
    if (!r) return ["after the case: no answer to a normal GET on a new connection"];
    const body = r.json();
    if (r.status !== 200 || body?.cluster !== "a") return [`after the case: a normal GET got ${r.status} ${r.text.slice(0, 200)}`];
    return [];
  } catch (error) {
    return [`after the case: a new connection failed: ${String(error)}`];
  } finally {
    conn?.close();
  }
}

async function runCase(c: Case): Promise<string[]> {
  ctx.a.clear();
  ctx.b.clear();
  const problems: string[] = [];
  const conn = await open();
  try {
    if (c.prelude) {
      conn.write(get(`${A}/version`)(ctx));
      const { responses } = await conn.responses(1);
      if (responses[0]?.status !== 200 || responses[0].json()?.cluster !== "a") return [`prelude GET failed: ${responses[0]?.status} ${responses[0]?.text.slice(0, 200)}`];
      conn.discard();
    }
    const sent = c.send(ctx);
    const writes = typeof sent === "string" ? [sent] : sent;
    for (const [i, bytes] of writes.entries()) {
      if (i > 0) await Bun.sleep(c.gapMs ?? 30);
      conn.write(bytes);
    }
    if (c.endWrite) conn.endWrite();
    const parsed = await conn.responses(c.want.length, 5000);
    const responses = parsed.responses.slice(0, c.want.length);
    if (parsed.error) problems.push(`unparseable answer: ${parsed.error}`);
    const min = c.want.length - (c.optionalTail ?? 0);
    if (responses.length < min) problems.push(`expected ${c.want.length} response(s), got ${responses.length}${conn.closed ? " before the connection closed" : " within 5 s"}: ${JSON.stringify(conn.raw().toString("latin1").slice(0, 300))}`);
    problems.push(...responseProblems(responses, c.want));
    const tunnel = () => conn.parse().tunnel ?? Buffer.alloc(0);
    if (c.closed === true) {
      if (!(await conn.waitClosed(5000))) problems.push("the connection was not closed");
      const all = conn.parse();
      if (all.responses.length > responses.length) problems.push(`more responses than expected after the last one: ${all.responses.slice(responses.length).map((r) => `${r.status} ${r.text.slice(0, 120)}`).join(" | ")}`);
      else if (all.error && !parsed.error) problems.push(`trailing bytes: ${all.error}`);
    } else if (c.closed === false && problems.length === 0) {
      const before = conn.parse().responses.length;
      if (conn.closed) problems.push("the connection was closed, expected it to stay usable");
      else {
        conn.write("GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n");
        const next = await conn.responses(before + 1, 5000);
        const last = next.responses[before];
        if (next.responses.length !== before + 1 || last?.status !== 200) problems.push(`the connection did not serve a next request: ${next.responses.length - before} answer(s), ${last?.status}`);
      }
    }
    if (c.check) problems.push(...(await c.check(ctx, { responses, conn, tunnel })));
  } finally {
    conn.close();
  }
  // Give a stray forward (one that should not have happened) time to arrive.
  await Bun.sleep(50);
  const wantA = c.records?.a ?? 0;
  const wantB = c.records?.b ?? 0;
  const expectedA = wantA === "any" ? "any" : wantA + (c.prelude ? 1 : 0);
  const seenA = caseRequests(ctx.a);
  const seenB = caseRequests(ctx.b);
  if (expectedA !== "any" && seenA.length !== expectedA) problems.push(`cluster a recorded ${seenA.length} request(s), expected ${expectedA}: ${seenA.map((r) => `${r.method} ${r.target}`).join(", ")}`);
  if (wantB !== "any" && seenB.length !== wantB) problems.push(`cluster b recorded ${seenB.length} request(s), expected ${wantB}: ${seenB.map((r) => `${r.method} ${r.target}`).join(", ")}`);
  problems.push(...recordedProblems(ctx.a), ...recordedProblems(ctx.b));
  problems.push(...(await healthProblems()));
  ctx.a.clear();
  ctx.b.clear();
  return problems;
}

const lastA = (c: Ctx): RawRecordedRequest | undefined => caseRequests(c.a).at(-1);
const neverReceived = (text: string) => (c: Ctx): string[] =>
  [c.a, c.b].filter((cl) => cl.receivedText().includes(text)).map((cl) => `cluster ${cl.name} received the bytes ${JSON.stringify(text)}`);

// -------------------------------------------------------------------------------------------------
// the corpus

const CASES: Case[] = [];
const add = (...cases: Case[]) => CASES.push(...cases);

// --- dot segments ---------------------------------------------------------------------------------

const TAIL_GET = "api/v1/namespaces";
const TAIL_UP = "api/v1/namespaces/default/pods/p/exec";

interface DotSpelling {
  name: string;
  target: (tail: string) => string;
  /** Aimed at cluster b: also tried with pass a-only. */
  towardB?: boolean;
}

const DOTS: DotSpelling[] = [
  { name: "../.. toward cluster b", target: (t) => `${A}/../../b/proxy/${t}`, towardB: true },
  { name: "%2e%2e toward cluster b", target: (t) => `${A}/%2e%2e/%2e%2e/b/proxy/${t}`, towardB: true },
  { name: "%2E%2e toward cluster b", target: (t) => `${A}/%2E%2e/%2E%2e/b/proxy/${t}`, towardB: true },
  { name: "%2E%2E toward cluster b", target: (t) => `${A}/%2E%2E/%2E%2E/b/proxy/${t}`, towardB: true },
  { name: ".%2e toward cluster b", target: (t) => `${A}/.%2e/.%2e/b/proxy/${t}`, towardB: true },
  { name: "%2e. toward cluster b", target: (t) => `${A}/%2e./%2e./b/proxy/${t}`, towardB: true },
  { name: "..\\ toward cluster b", target: (t) => `${A}/..\\..\\b\\proxy/${t}`, towardB: true },
  { name: "..%5c toward cluster b", target: (t) => `${A}/..%5c..%5cb%5cproxy/${t}`, towardB: true },
  { name: "%5c..%5c toward cluster b", target: (t) => `${A}/x%5c..%5c..%5c..%5cb/proxy/${t}`, towardB: true },
  { name: "..%2f toward cluster b", target: (t) => `${A}/..%2f..%2fb/proxy/${t}`, towardB: true },
  { name: "%2e%2e%2f toward cluster b", target: (t) => `${A}/%2e%2e%2f%2e%2e%2fb/proxy/${t}`, towardB: true },
  { name: "doubled slashes //..// toward cluster b", target: (t) => `${A}//..//..//b/proxy/${t}`, towardB: true },
  { name: "mixed ../%2e%2e toward cluster b", target: (t) => `${A}/../%2e%2e/b/proxy/${t}`, towardB: true },
  { name: ".. in place of the cluster name", target: (t) => `${CLUSTERS}/a/../b/proxy/${t}`, towardB: true },
  { name: "%2e%2e after the cluster name", target: (t) => `${CLUSTERS}/a/%2e%2e/b/proxy/${t}`, towardB: true },
  { name: "a%2F..%2Fb as the cluster name", target: (t) => `${CLUSTERS}/a%2F..%2Fb/proxy/${t}`, towardB: true },
  { name: "single . segment", target: (t) => `${A}/./${t}` },
  { name: "single %2e segment", target: (t) => `${A}/%2e/${t}` },
  { name: ".. at the end of the path", target: (t) => `${A}/${t}/..` },
  { name: "%2e%2e at the end of the path", target: (t) => `${A}/${t}/%2e%2e` },
  { name: ". at the end of the path", target: (t) => `${A}/${t}/.` },
  { name: ".. before a query", target: (t) => `${A}/${t}/..?watch=1` },
  { name: "%2e%2e before a query", target: (t) => `${A}/${t}/%2e%2e?x=1` },
  { name: ".. to a sibling object", target: (t) => `${A}/api/v1/namespaces/default/pods/other/../../../../${t}` },
  { name: "../../.. toward kpass's clusters", target: () => `${A}/../../../clusters` },
  { name: "%2e%2e toward kpass's passes", target: () => `${A}/%2e%2e/%2e%2e/%2e%2e/passes` },
  { name: "..%2f toward kpass's clusters", target: () => `${A}/..%2f..%2f..%2fclusters` },
];

const OUTSIDE_DOTS: { name: string; target: string }[] = [
  { name: "/api/../apis", target: "/api/../apis" },
  { name: "clusters/../passes", target: `${CLUSTERS}/../passes` },
  { name: "/./version", target: "/./version" },
  { name: "/healthz/..", target: "/healthz/.." },
  { name: "group/./clusters", target: `${G}/./clusters` },
  { name: "/apis/%2e%2e/version", target: "/apis/%2e%2e/version" },
  { name: "clusters/%2e%2e/passes", target: `${CLUSTERS}/%2e%2e/passes` },
];

const withQuery = (target: string, query: string) => (target.includes("?") ? target : `${target}?${query}`);

DOTS.forEach((d, i) => {
  const upgrade = i % 2 === 0 ? SPDY : WS;
  const upgradeName = i % 2 === 0 ? "SPDY/3.1" : "websocket";
  add(
    { name: `dot segments, ${d.name}: first request of a connection`, send: get(d.target(TAIL_GET)), want: [NOT_FOUND], closed: false },
    { name: `dot segments, ${d.name}: second request of a keep-alive connection`, prelude: true, send: get(d.target(TAIL_GET)), want: [NOT_FOUND], closed: false },
    {
      name: `dot segments, ${d.name}: ${upgradeName} upgrade head to exec`,
      send: rq(i % 2 === 0 ? "POST" : "GET", withQuery(d.target(TAIL_UP), "command=id&stdout=true"), { headers: i % 2 === 0 ? [...upgrade, "Content-Length: 0"] : upgrade }),
      want: [NOT_FOUND],
      closed: true,
    },
  );
  if (d.towardB) add({ name: `dot segments, ${d.name}: as pass a-only`, send: get(d.target(TAIL_GET), { who: "aOnly" }), want: [NOT_FOUND], closed: false });
});

for (const d of OUTSIDE_DOTS) {
  add(
    { name: `dot segments outside the proxy, ${d.name}: first request`, send: get(d.target), want: [NOT_FOUND], closed: false },
    { name: `dot segments outside the proxy, ${d.name}: second request`, prelude: true, send: get(d.target), want: [NOT_FOUND], closed: false },
    { name: `dot segments outside the proxy, ${d.name}: upgrade head`, send: get(d.target, { headers: SPDY }), want: [NOT_FOUND], closed: true },
  );
}

// Double-encoded dots are not dot segments: forwarded as they are, never resolved into cluster b.
const doubleEncoded = (c: Ctx): string[] =>
  caseRequests(c.a).filter((r) => !r.target.includes("%252e") && r.target !== "/version").map((r) => `cluster a recorded ${r.target} without the %252e it was sent`);
add(
  { name: "double-encoded %252e%252e toward cluster b is forwarded to a, not resolved", send: get(`${A}/%252e%252e/%252e%252e/b/proxy/${TAIL_GET}`), want: [ANY], closed: false, records: { a: "any" }, check: doubleEncoded },
  { name: "double-encoded %252e%252e as a second request", prelude: true, send: get(`${A}/%252e%252e/%252e%252e/b/proxy/${TAIL_GET}`), want: [ANY], closed: false, records: { a: "any" }, check: doubleEncoded },
  { name: "double-encoded %252e single segment", send: get(`${A}/api/%252e/v1`), want: [ANY], closed: false, records: { a: "any" }, check: doubleEncoded },
);

// --- framing: 400 BadRequest, connection closed, nothing reaches a cluster --------------------------

const framing = (name: string, send: Build, extra: Partial<Case> = {}): Case => ({ name: `framing: ${name}`, send, want: [BAD], closed: true, ...extra });
const H = (extra = "") => `Host: localhost\r\nAuthorization: Bearer {admin}\r\n${extra}`;

add(
  framing("Content-Length and Transfer-Encoding", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`)),
  framing("Transfer-Encoding then Content-Length", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`)),
  framing("Content-Length: 0 with Transfer-Encoding: chunked on a GET", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`)),
  framing("two differing Content-Length", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef`)),
  framing("two Content-Length 0 and 5 on a GET", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}Content-Length: 0\r\nContent-Length: 5\r\n\r\nabcde`)),
  framing("two Host headers", verbatim(`GET ${A}/version HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nAuthorization: Bearer {admin}\r\n\r\n`)),
  framing("two Host headers differing in case", verbatim(`GET ${A}/version HTTP/1.1\r\nHost: localhost\r\nhost: localhost\r\nAuthorization: Bearer {admin}\r\n\r\n`)),
  framing("two Authorization headers (admin and nobody)", verbatim(`GET ${A}/version HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {nobody}\r\nAuthorization: Bearer {admin}\r\n\r\n`)),
  framing("two identical Authorization headers", verbatim(`GET ${A}/version HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\nauthorization: Bearer {admin}\r\n\r\n`)),
  framing("obs-fold with a space", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Folded: one\r\n two\r\n\r\n`)),
  framing("obs-fold with a tab", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Folded: one\r\n\ttwo\r\n\r\n`)),
  framing("obs-fold continuing Authorization", verbatim(`GET ${A}/version HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer\r\n {admin}\r\n\r\n`)),
  framing("obs-fold continuing Transfer-Encoding", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`)),
  framing("first header line starts with a space", verbatim(`GET ${A}/version HTTP/1.1\r\n Host: localhost\r\nAuthorization: Bearer {admin}\r\n\r\n`)),
  framing("header name with a space inside", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}Foo Bar: x\r\n\r\n`)),
  framing("space before the colon (Foo : bar)", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}Foo : bar\r\n\r\n`)),
  framing("tab before the colon", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}Foo\t: bar\r\n\r\n`)),
  framing("Transfer-Encoding : chunked (space before the colon)", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`)),
  framing("Content-Length : 5 (space before the colon)", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length : 5\r\n\r\nabcde`)),
  framing("header line without a colon", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}NoColonHere\r\n\r\n`)),
  framing("empty header name", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}: value\r\n\r\n`)),
  framing("non-token character in a header name", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Fo(o): x\r\n\r\n`)),
  framing("bare LF line endings", verbatim(`GET ${A}/version HTTP/1.1\nHost: localhost\nAuthorization: Bearer {admin}\n\n`)),
  framing("one header line ending in bare LF", verbatim(`GET ${A}/version HTTP/1.1\r\nHost: localhost\nAuthorization: Bearer {admin}\r\n\r\n`)),
  framing("bare LF ending the head", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}\n`)),
  framing("bare CR as a line ending", verbatim(`GET ${A}/version HTTP/1.1\rHost: localhost\r\nAuthorization: Bearer {admin}\r\n\r\n`)),
  framing("NUL inside a header value", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Value: a\x00b\r\n\r\n`)),
  framing("CR inside a header value", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Value: a\rb\r\n\r\n`)),
  framing("LF inside a header value", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Value: a\nX-Injected: b\r\n\r\n`)),
  framing("control character 0x01 inside a header value", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Value: a\x01b\r\n\r\n`)),
  framing("DEL inside a header value", verbatim(`GET ${A}/version HTTP/1.1\r\n${H()}X-Value: a\x7fb\r\n\r\n`)),
  framing("CR in the request target", verbatim(`GET ${A}/ver\rsion HTTP/1.1\r\n${H()}\r\n`)),
  framing("LF in the request target", verbatim(`GET ${A}/ver\nsion HTTP/1.1\r\n${H()}\r\n`)),
  framing("NUL in the request target", verbatim(`GET ${A}/ver\x00sion HTTP/1.1\r\n${H()}\r\n`)),
  framing("space in the request target", verbatim(`GET ${A}/ver sion HTTP/1.1\r\n${H()}\r\n`)),
  framing("tab in the request target", verbatim(`GET ${A}/ver\tsion HTTP/1.1\r\n${H()}\r\n`)),
  framing("byte 0x80 in the request target", verbatim(`GET ${A}/ver\x80sion HTTP/1.1\r\n${H()}\r\n`)),
  framing("byte 0xff in the request target", verbatim(`GET ${A}/ver\xffsion HTTP/1.1\r\n${H()}\r\n`)),
  framing("raw UTF-8 in the request target", verbatim(`GET ${A}/api/v1/namespaces/caf\xc3\xa9 HTTP/1.1\r\n${H()}\r\n`)),
  framing("absolute-form target", verbatim(`GET https://x/ HTTP/1.1\r\n${H()}\r\n`)),
  framing("absolute-form target naming kpass and cluster a", (c) => verbatim(`GET ${c.kpass.url}${A}/version HTTP/1.1\r\n${H()}\r\n`)(c)),
  framing("CONNECT authority-form", verbatim(`CONNECT 127.0.0.1:443 HTTP/1.1\r\n${H()}\r\n`)),
  framing("OPTIONS *", verbatim(`OPTIONS * HTTP/1.1\r\n${H()}\r\n`)),
  framing("target without a leading slash", verbatim(`GET version HTTP/1.1\r\n${H()}\r\n`)),
  framing("target that is only a query", verbatim(`GET ?x=1 HTTP/1.1\r\n${H()}\r\n`)),
  framing("HTTP/2 connection preface", verbatim("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
  framing("HTTP/0.9 request line", verbatim(`GET ${A}/version\r\n\r\n`)),
  framing("HTTP/2.0 in the request line", verbatim(`GET ${A}/version HTTP/2.0\r\n${H()}\r\n`)),
  framing("lower-case http/1.1", verbatim(`GET ${A}/version http/1.1\r\n${H()}\r\n`)),
  framing("two spaces after the method", verbatim(`GET  ${A}/version HTTP/1.1\r\n${H()}\r\n`)),
  framing("space after the version", verbatim(`GET ${A}/version HTTP/1.1 \r\n${H()}\r\n`)),
  framing("non-token character in the method", verbatim(`G(T ${A}/version HTTP/1.1\r\n${H()}\r\n`)),
  framing("garbage request line", verbatim("hello there\r\n\r\n")),
  framing("TLS handshake bytes inside TLS", verbatim("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")),
  framing("HTTP/1.1 without Host", verbatim(`GET ${A}/version HTTP/1.1\r\nAuthorization: Bearer {admin}\r\n\r\n`)),
);

for (const te of ["gzip, chunked", "chunked, identity", "xchunked", "identity", "gzip", "chunked, chunked", "chunked;q=1", "\"chunked\""]) {
  add(framing(`Transfer-Encoding: ${te}`, verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Transfer-Encoding: ${te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`)));
}
add(framing("two Transfer-Encoding: chunked headers", verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`)));
for (const cl of ["-1", "1e3", "+5", " 5 5", "0x5", "5.0", "abc", "", "99999999999999999999"]) {
  add(framing(`Content-Length: ${JSON.stringify(cl)}`, verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length:${cl.startsWith(" ") ? cl : ` ${cl}`}\r\n\r\nhello`)));
}
const badChunks: [string, string][] = [
  ["non-hex chunk size", "zz\r\nhello\r\n0\r\n\r\n"],
  ["chunk data not followed by CRLF", "5\r\nhelloXX\r\n0\r\n\r\n"],
  ["chunk size overflow ffffffffffffffffff", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"],
  ["negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"],
  ["0x-prefixed chunk size", "0x5\r\nhello\r\n0\r\n\r\n"],
  ["empty chunk size line", "\r\nhello\r\n0\r\n\r\n"],
];
for (const [name, body] of badChunks) {
  add(framing(`malformed chunked body on a proxied POST: ${name}`, verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${body}`)));
}

// --- oversized heads: 431 and closed ----------------------------------------------------------------

add(
  { name: "head limit: a 100 KB URL", send: get(`${A}/${"x".repeat(100_000)}`), want: [TOO_LARGE], closed: true },
  { name: "head limit: a 100 KB query on kpass's own API", send: get(`/apis?${"q=1&".repeat(25_000)}`), want: [TOO_LARGE], closed: true },
  { name: "head limit: 10,000 headers", send: get(`${A}/version`, { headers: Array.from({ length: 10_000 }, (_, i) => `X-H${i}: v`) }), want: [TOO_LARGE], closed: true },
  { name: "head limit: one 70 KB header", send: get(`${A}/version`, { headers: [`X-Big: ${"a".repeat(70 * 1024)}`] }), want: [TOO_LARGE], closed: true },
  { name: "head limit: 70 KB of head that never ends", send: () => [`GET ${A}/version HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(70 * 1024)}`], want: [TOO_LARGE], closed: true },
  {
    name: "head limit: a 60 KB header is still served",
    send: get(`${A}/version`, { headers: [`X-Big: ${"a".repeat(60 * 1024)}`] }),
    want: [ok("a", "/version")],
    closed: false,
    records: { a: 1 },
  },
);

// --- upgrades ---------------------------------------------------------------------------------------

const refusedUpgrade = (name: string, send: Build, want: Want = BAD, extra: Partial<Case> = {}): Case => ({ name: `upgrade: ${name}`, send, want: [want], closed: true, ...extra });
const echo = (payload: string) => async (c: Ctx, got: Got): Promise<string[]> => {
  const problems: string[] = [];
  got.conn.write(payload);
  await got.conn.waitFor(() => got.tunnel().toString("latin1").includes(payload), 5000);
  if (!got.tunnel().toString("latin1").includes(payload)) problems.push(`the tunnel did not echo ${JSON.stringify(payload)}: got ${JSON.stringify(got.tunnel().toString("latin1").slice(0, 100))}`);
  const up = lastA(c);
  if (!up?.upgrade) problems.push("cluster a did not record the upgrade request");
  else if (up.body.length > 0) problems.push(`the upgrade request reached cluster a with a body: ${JSON.stringify(up.body.toString("latin1"))}`);
  return problems;
};
const tunnel = (name: string, send: Build, check: Case["check"] = echo("ping-through-the-tunnel"), extra: Partial<Case> = {}): Case => ({
  name: `upgrade: ${name}`,
  send,
  want: [SWITCHED],
  closed: "tunnel",
  records: { a: 1 },
  check,
  ...extra,
});
const wsAccept = async (c: Ctx, got: Got): Promise<string[]> => {
  const accept = got.responses[0]?.header("sec-websocket-accept");
  const problems = accept === WS_ACCEPT ? [] : [`Sec-WebSocket-Accept is ${accept}, expected ${WS_ACCEPT}`];
  if (got.responses[0]?.header("upgrade")?.toLowerCase() !== "websocket") problems.push(`101 without Upgrade: websocket (${got.responses[0]?.header("upgrade")})`);
  return [...problems, ...(await echo("ws-bytes")(c, got))];
};

add(
  refusedUpgrade("SPDY/3.1 to a/proxy/version", get(`${A}/version`, { headers: SPDY })),
  refusedUpgrade("websocket to a/proxy/version", get(`${A}/version`, { headers: WS })),
  refusedUpgrade("SPDY/3.1 to a namespace list", get(`${A}/api/v1/namespaces`, { headers: SPDY })),
  refusedUpgrade("SPDY/3.1 to a pod (not a subresource)", get(`${A}/api/v1/namespaces/default/pods/p`, { headers: SPDY })),
  refusedUpgrade("websocket to pods/p/log", get(`${A}/api/v1/namespaces/default/pods/p/log?follow=true`, { headers: WS })),
  refusedUpgrade("SPDY/3.1 to exec/ (trailing slash)", get(`${EXEC}/`, { headers: SPDY })),
  refusedUpgrade("SPDY/3.1 to execx", get(`${EXEC}x`, { headers: SPDY })),
  refusedUpgrade("SPDY/3.1 to secrets/x/exec (not a pod)", get(`${A}/api/v1/namespaces/default/secrets/x/exec`, { headers: SPDY })),
  refusedUpgrade("SPDY/3.1 to kpass's clusters", get(CLUSTERS, { headers: SPDY })),
  refusedUpgrade("websocket to kpass's /healthz", get("/healthz", { headers: WS })),
  refusedUpgrade("websocket to kpass's /version", get("/version", { headers: WS })),
  refusedUpgrade("SPDY/3.1 to an exec path outside any cluster", get("/api/v1/namespaces/default/pods/p/exec", { headers: SPDY })),
  refusedUpgrade("Connection: keep-alive, Upgrade to a/proxy/version", get(`${A}/version`, { headers: ["Connection: keep-alive, Upgrade", "Upgrade: websocket"] })),
  refusedUpgrade("lower-case connection: upgrade to a/proxy/version", get(`${A}/version`, { headers: ["connection: upgrade", "upgrade: websocket"] })),
  refusedUpgrade("upgrade to a/proxy/version as the second request", get(`${A}/version`, { headers: SPDY }), BAD, { prelude: true }),
  refusedUpgrade("exec with Content-Length: 10 and a body", rq("POST", EXEC_Q, { headers: SPDY, body: "0123456789" })),
  refusedUpgrade("exec with Transfer-Encoding: chunked", rq("POST", EXEC_Q, { headers: SPDY, body: "hello", chunked: 5 })),
  refusedUpgrade("exec with Transfer-Encoding: chunked and an empty body", rq("POST", EXEC_Q, { headers: [...SPDY, "Transfer-Encoding: chunked"], body: "0\r\n\r\n", noLength: true })),
  refusedUpgrade("unknown upgrade token h2c", get(EXEC_Q, { headers: ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"] })),
  refusedUpgrade("unknown upgrade token foo", get(EXEC_Q, { headers: ["Connection: Upgrade", "Upgrade: foo"] })),
  refusedUpgrade("upgrade token list websocket, h2c", get(EXEC_Q, { headers: ["Connection: Upgrade", "Upgrade: websocket, h2c", `Sec-WebSocket-Key: ${WS_KEY}`, "Sec-WebSocket-Version: 13"] })),
  refusedUpgrade("upgrade token SPDY/3", get(EXEC_Q, { headers: ["Connection: Upgrade", "Upgrade: SPDY/3"] })),
  refusedUpgrade("h2c to a/proxy/version", get(`${A}/version`, { headers: ["Connection: Upgrade", "Upgrade: h2c"] })),
  refusedUpgrade("exec without a token", get(EXEC_Q, { who: null, headers: WS }), UNAUTHORIZED),
  refusedUpgrade("exec as pass nobody (reaches no cluster: 404)", get(EXEC_Q, { who: "nobody", headers: WS }), NOT_FOUND),
  refusedUpgrade("exec on cluster b as pass a-only (404: b does not exist for it)", get(`${B}/api/v1/namespaces/default/pods/p/exec?command=id`, { who: "aOnly", headers: WS }), NOT_FOUND),
  refusedUpgrade("SMUGGLING: upgrade GET a/proxy/version as nobody, then DELETE in the same write", cat(get(`${A}/version`, { who: "nobody", headers: SPDY }), SMUGGLED_DELETE), BAD, { check: neverReceived(SMUGGLED) }),
  refusedUpgrade("SMUGGLING: upgrade GET a/proxy/version as admin, then DELETE in the same write", cat(get(`${A}/version`, { headers: WS }), SMUGGLED_DELETE), BAD, { check: neverReceived(SMUGGLED) }),
  refusedUpgrade("SMUGGLING: upgrade to a pod (not exec), then DELETE", cat(get(`${A}/api/v1/namespaces/default/pods/p`, { headers: SPDY }), SMUGGLED_DELETE), BAD, { check: neverReceived(SMUGGLED) }),
  refusedUpgrade("SMUGGLING: upgrade to a/proxy/version, DELETE written 100 ms later", (c) => get(`${A}/version`, { headers: SPDY })(c), BAD, {
    send: (c) => [get(`${A}/version`, { headers: SPDY })(c), SMUGGLED_DELETE],
    gapMs: 100,
    check: neverReceived(SMUGGLED),
  }),
  refusedUpgrade("SMUGGLING: POST exec upgrade with Content-Length: 40 whose body is a second request", verbatim(`POST ${EXEC_Q} HTTP/1.1\r\n${H()}${SPDY.join("\r\n")}\r\nContent-Length: 40\r\n\r\n${`DELETE /${SMUGGLED} HTTP/1.1\r\nHost: x\r\n\r\n`.padEnd(40, "x")}`), BAD, { check: neverReceived(SMUGGLED) }),
  refusedUpgrade("SMUGGLING: exec upgrade with a chunked body carrying a request", rq("POST", EXEC_Q, { headers: SPDY, body: SMUGGLED_DELETE, chunked: 1000 }), BAD, { check: neverReceived(SMUGGLED) }),
  {
    name: "upgrade: exec the cluster refuses (403): the 403 is relayed, then closed; later bytes never reach the cluster",
    send: cat(get(`${A}/api/v1/namespaces/default/pods/denied/exec?command=id`, { headers: SPDY }), SMUGGLED_DELETE),
    want: [FORBIDDEN],
    closed: true,
    records: { a: 1 },
    check: neverReceived(SMUGGLED),
  },
  {
    name: "upgrade: exec the cluster refuses (403), bytes written after the head in a second write",
    send: (c) => [get(`${A}/api/v1/namespaces/default/pods/denied/exec?command=id`, { headers: WS })(c), SMUGGLED_DELETE],
    want: [FORBIDDEN],
    closed: true,
    records: { a: 1 },
    check: neverReceived(SMUGGLED),
  },
  tunnel("SPDY/3.1 exec (POST, Content-Length: 0) is switched and echoes", rq("POST", EXEC_Q, { headers: [...SPDY, "Content-Length: 0"] })),
  tunnel("SPDY/3.1 exec (GET) is switched and echoes", get(EXEC_Q, { headers: SPDY })),
  tunnel("lower-case spdy/3.1 exec is switched", get(EXEC_Q, { headers: ["Connection: Upgrade", "Upgrade: spdy/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"] })),
  tunnel("websocket exec is switched with the right Sec-WebSocket-Accept", get(EXEC_Q, { headers: WS }), wsAccept),
  tunnel("SPDY/3.1 attach is switched", rq("POST", `${A}/api/v1/namespaces/default/pods/p/attach?stdout=true`, { headers: [...SPDY, "Content-Length: 0"] })),
  tunnel("websocket portforward is switched", get(`${A}/api/v1/namespaces/default/pods/p/portforward?ports=80`, { headers: WS }), wsAccept),
  tunnel("websocket to pods/p/proxy/ws is switched", get(`${A}/api/v1/namespaces/default/pods/p/proxy/ws`, { headers: WS }), wsAccept),
  tunnel("websocket to services/s/proxy is switched", get(`${A}/api/v1/namespaces/default/services/s/proxy`, { headers: WS }), wsAccept),
  tunnel("SPDY/3.1 to nodes/n/proxy/x is switched", get(`${A}/api/v1/nodes/n/proxy/x`, { headers: SPDY })),
  tunnel("exec upgrade as the second request of a keep-alive connection", get(EXEC_Q, { headers: SPDY }), echo("second-request-tunnel"), { prelude: true }),
  tunnel("exec as pass a-only", get(EXEC_Q, { who: "aOnly", headers: WS }), wsAccept),
  tunnel("exec with bytes in the same write as the head: they never become part of the request", cat(get(EXEC_Q, { headers: SPDY }), "early-bytes"), async (c, got) => {
    const up = lastA(c);
    const problems = up && up.body.length > 0 ? [`early bytes reached cluster a as a request body: ${JSON.stringify(up.body.toString("latin1"))}`] : [];
    return [...problems, ...(await echo("after-101")(c, got))];
  }),
  {
    name: "upgrade: Upgrade header without Connection: Upgrade is a normal request",
    send: get(`${A}/version`, { headers: ["Upgrade: websocket"] }),
    want: [ok("a", "/version")],
    closed: false,
    records: { a: 1 },
    check: (c) => (lastA(c)?.upgrade ? ["cluster a was asked to upgrade"] : []),
  },
  {
    name: "upgrade: Connection: Upgrade without an Upgrade header is a normal request",
    send: get(`${A}/version`, { headers: ["Connection: Upgrade"] }),
    want: [ok("a", "/version")],
    closed: false,
    records: { a: 1 },
    check: (c) => (lastA(c)?.upgrade ? ["cluster a was asked to upgrade"] : []),
  },
);

// --- pipelining -------------------------------------------------------------------------------------

const TEN: [string, Want, "a" | "b" | undefined][] = [
  [`${A}/version`, ok("a", "/version"), "a"],
  [`${B}/version`, ok("b", "/version"), "b"],
  ["/version", KPASS_VERSION, undefined],
  [CLUSTERS, CLUSTER_LIST, undefined],
  [`${A}/api/v1/namespaces`, ok("a", "/api/v1/namespaces"), "a"],
  [`${B}/api`, ok("b", "/api"), "b"],
  ["/version", KPASS_VERSION, undefined],
  [`${A}/apis?x=1`, ok("a", "/apis?x=1"), "a"],
  [`${B}/apis/apps/v1`, ok("b", "/apis/apps/v1"), "b"],
  [CLUSTERS, CLUSTER_LIST, undefined],
];

add(
  { name: "pipelining: 2 GETs in one write (kpass /version, cluster a)", send: cat(get("/version"), get(`${A}/version`)), want: [KPASS_VERSION, ok("a", "/version")], closed: false, records: { a: 1 } },
  { name: "pipelining: 3 GETs in one write (clusters, a, b)", send: cat(get(CLUSTERS), get(`${A}/api/v1/namespaces`), get(`${B}/api/v1/namespaces`)), want: [CLUSTER_LIST, ok("a", "/api/v1/namespaces"), ok("b", "/api/v1/namespaces")], closed: false, records: { a: 1, b: 1 } },
  { name: "pipelining: 10 GETs in one write, answered in order", send: cat(...TEN.map(([t]) => get(t))), want: TEN.map(([, w]) => w), closed: false, records: { a: 3, b: 3 } },
  { name: "pipelining: 10 GETs split into 7-byte writes", send: (c) => { const all = cat(...TEN.map(([t]) => get(t)))(c); return all.match(/[\s\S]{1,7}/g) ?? []; }, gapMs: 0, want: TEN.map(([, w]) => w), closed: false, records: { a: 3, b: 3 } },
  { name: "pipelining: Connection: close on the 2nd of 3 → exactly 2 responses, then closed", send: cat(get(`${A}/version`), get(`${B}/version`, { headers: ["Connection: close"] }), get(`${A}/api`)), want: [ok("a", "/version"), ok("b", "/version")], closed: true, records: { a: 1, b: 1 } },
  { name: "pipelining: Connection: close on the 1st of 2 → exactly 1 response, then closed", send: cat(get("/version", { headers: ["Connection: close"] }), get(`${A}/version`)), want: [KPASS_VERSION], closed: true },
  { name: "pipelining: HTTP/1.0 to kpass → answered, then closed", send: verbatim("GET /version HTTP/1.0\r\n\r\n"), want: [KPASS_VERSION], closed: true },
  { name: "pipelining: HTTP/1.0 to cluster a → answered, then closed", send: get(`${A}/version`, { version: "HTTP/1.0", host: null }), want: [ok("a", "/version")], closed: true, records: { a: 1 } },
  { name: "pipelining: HTTP/1.0 followed by another request → only the first is answered", send: cat(get(`${A}/version`, { version: "HTTP/1.0" }), get(`${B}/version`)), want: [ok("a", "/version")], closed: true, records: { a: 1 } },
  { name: "pipelining: a, dot segment, b → 200, 404, 200", send: cat(get(`${A}/version`), get(`${A}/../../b/proxy/version`), get(`${B}/version`)), want: [ok("a", "/version"), NOT_FOUND, ok("b", "/version")], closed: false, records: { a: 1, b: 1 } },
  { name: "pipelining: a, obs-fold, b → 200, 400, closed; b never asked", send: cat(get(`${A}/version`), verbatim(`GET ${B}/version HTTP/1.1\r\n${H()}X-F: 1\r\n 2\r\n\r\n`), get(`${B}/version`)), want: [ok("a", "/version"), BAD], closed: true, records: { a: 1 } },
  { name: "pipelining: a as a-only, b as a-only → 200, 404", send: cat(get(`${A}/version`, { who: "aOnly" }), get(`${B}/version`, { who: "aOnly" })), want: [ok("a", "/version"), NOT_FOUND], closed: false, records: { a: 1 } },
  { name: "pipelining: POST with a body to a, then GET b", send: cat(rq("POST", CONFIGMAPS, { body: '{"kind":"ConfigMap"}', headers: ["Content-Type: application/json"] }), get(`${B}/version`)), want: [ok("a", "/api/v1/namespaces/default/configmaps"), ok("b", "/version")], closed: false, records: { a: 1, b: 1 }, check: (c) => (lastA(c)?.body.toString() === '{"kind":"ConfigMap"}' ? [] : [`cluster a got body ${JSON.stringify(lastA(c)?.body.toString())}`]) },
  { name: "pipelining: chunked POST to a, then GET a", send: cat(rq("POST", CONFIGMAPS, { body: '{"kind":"ConfigMap","data":{"k":"v"}}', chunked: 7 }), get(`${A}/version`)), want: [ok("a", "/api/v1/namespaces/default/configmaps"), ok("a", "/version")], closed: false, records: { a: 2 }, check: (c) => (caseRequests(c.a)[0]?.body.toString() === '{"kind":"ConfigMap","data":{"k":"v"}}' ? [] : [`cluster a got body ${JSON.stringify(caseRequests(c.a)[0]?.body.toString())}`]) },
);

// --- bodies -----------------------------------------------------------------------------------------

const BODY = JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x" }, data: { text: "é and \u2603 and bytes" } });
const exactBody = (expected: string) => (c: Ctx): string[] => {
  const got = lastA(c)?.body;
  return got && got.equals(Buffer.from(expected, "latin1")) ? [] : [`cluster a recorded body ${JSON.stringify(got?.toString("latin1").slice(0, 200))}, expected ${JSON.stringify(expected.slice(0, 200))}`];
};
const utf8 = Buffer.from(BODY, "utf8").toString("latin1");
const big = "x".repeat(100_000);

add(
  { name: "bodies: truncated body to kpass's API (CL 100, 10 sent, write closed)", send: verbatim(`POST ${CLUSTERS} HTTP/1.1\r\n${H()}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"kind":"C`), endWrite: true, want: [BAD], optionalTail: 1, closed: true },
  { name: "bodies: truncated body to cluster a (CL 100, 10 sent, write closed)", send: verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"kind":"C`), endWrite: true, want: [ANY], optionalTail: 1, closed: true },
  { name: "bodies: truncated chunked body to cluster a (write closed mid-chunk)", send: verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Transfer-Encoding: chunked\r\n\r\n64\r\n{"kind":"C`), endWrite: true, want: [ANY], optionalTail: 1, closed: true },
  { name: "bodies: over-long body (CL 5, then garbage) → first answered, the rest is a bad request", send: verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length: 5\r\n\r\n12345garbage line\r\n\r\n`), want: [ok("a", "/api/v1/namespaces/default/configmaps"), BAD], closed: true, records: { a: 1 }, check: exactBody("12345") },
  { name: "bodies: over-long body whose excess is a valid request → both answered", send: cat(verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Content-Length: 5\r\n\r\n12345`), get(`${B}/version`)), want: [ok("a", "/api/v1/namespaces/default/configmaps"), ok("b", "/version")], closed: false, records: { a: 1, b: 1 }, check: exactBody("12345") },
  { name: "bodies: valid chunked POST is forwarded with its exact body", send: rq("POST", CONFIGMAPS, { body: utf8, chunked: 10, headers: ["Content-Type: application/json"] }), want: [ok("a", "/api/v1/namespaces/default/configmaps")], closed: false, records: { a: 1 }, check: exactBody(utf8) },
  { name: "bodies: chunked POST with chunk extensions and a trailer", send: verbatim(`POST ${CONFIGMAPS} HTTP/1.1\r\n${H()}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6;a="b"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n`), want: [ok("a", "/api/v1/namespaces/default/configmaps")], closed: false, records: { a: 1 }, check: exactBody("hello world") },
  { name: "bodies: 100 KB chunked POST in one chunk", send: rq("POST", CONFIGMAPS, { body: big, chunked: 100_000 }), want: [ok("a", "/api/v1/namespaces/default/configmaps")], closed: false, records: { a: 1 }, check: exactBody(big) },
  { name: "bodies: 100 KB Content-Length POST written in 3 pieces", send: (c) => { const all = rq("POST", CONFIGMAPS, { body: big })(c); return [all.slice(0, 1000), all.slice(1000, 50_000), all.slice(50_000)]; }, want: [ok("a", "/api/v1/namespaces/default/configmaps")], closed: false, records: { a: 1 }, check: exactBody(big) },
  { name: "bodies: UTF-8 body with Content-Length in bytes", send: rq("POST", CONFIGMAPS, { body: utf8 }), want: [ok("a", "/api/v1/namespaces/default/configmaps")], closed: false, records: { a: 1 }, check: exactBody(utf8) },
  { name: "bodies: GET with a Content-Length body that looks like a request → the body is not a request", send: cat(get(`${A}/version`, { body: `GET ${B}/${SMUGGLED} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n` }), get(`${B}/version`)), want: [ok("a", "/version"), ok("b", "/version")], closed: false, records: { a: 1, b: 1 } },
  { name: "bodies: invalid JSON in a chunked body to kpass's API → 400 on a usable connection", send: rq("POST", CLUSTERS, { body: "{not json", chunked: 3, headers: ["Content-Type: application/json"] }), want: [BAD], closed: false },
);

// --- authentication ---------------------------------------------------------------------------------

const AUTH: { name: string; header: (c: Ctx) => string | undefined }[] = [
  { name: "no Authorization", header: () => undefined },
  { name: "Bearer with an empty token", header: () => "Bearer " },
  { name: "the word Bearer alone", header: () => "Bearer" },
  { name: "Basic auth carrying the admin token", header: (c) => `Basic ${Buffer.from(`admin:${c.tokens.admin}`).toString("base64")}` },
  { name: "the admin token without Bearer", header: (c) => c.tokens.admin },
  { name: "a token re-signed with another key", header: (c) => `Bearer ${c.tokens.forged}` },
  { name: "an expired token signed with another key", header: (c) => `Bearer ${c.tokens.expired}` },
  { name: "the admin token with an expiry edited in", header: (c) => `Bearer ${c.tokens.expiredTampered}` },
  { name: "an alg: none token", header: (c) => `Bearer ${c.tokens.algNone}` },
  { name: "the admin token with its signature altered", header: (c) => `Bearer ${c.tokens.tampered}` },
  { name: "a token of a deleted pass", header: (c) => `Bearer ${c.tokens.gonePass}` },
  { name: "not a JWT", header: () => "Bearer not-a-jwt" },
  { name: "the admin token followed by junk", header: (c) => `Bearer ${c.tokens.admin} junk` },
];
for (const a of AUTH) {
  for (const [where, target] of [["cluster a", `${A}/version`], ["kpass's clusters", CLUSTERS]] as const) {
    add({
      name: `auth: ${a.name} → 401 (${where})`,
      send: (c) => {
        const header = a.header(c);
        return `GET ${target} HTTP/1.1\r\nHost: localhost\r\n${header === undefined ? "" : `Authorization: ${header}\r\n`}\r\n`;
      },
      want: [UNAUTHORIZED],
      closed: false,
    });
  }
}
add(
  { name: "auth: pass nobody on cluster a's /version → 404 (a cluster it does not reach does not exist for it)", send: get(`${A}/version`, { who: "nobody" }), want: [NOT_FOUND], closed: false },
  { name: "auth: pass nobody on cluster a's namespaces → 404", send: get(`${A}/api/v1/namespaces`, { who: "nobody" }), want: [NOT_FOUND], closed: false },
  { name: "auth: pass nobody lists kpass's clusters and sees none of them", send: get(CLUSTERS, { who: "nobody" }), want: [{ status: 200, json: (b) => (b?.kind === "ClusterList" && Array.isArray(b.items) && b.items.length === 0 ? undefined : `expected an empty ClusterList: ${JSON.stringify(b)?.slice(0, 200)}`) }], closed: false },
  { name: "auth: pass nobody may not read cluster a's object", send: get(`${CLUSTERS}/a`, { who: "nobody" }), want: [ANY], closed: false, check: (_c, got) => (got.responses[0] && [403, 404].includes(got.responses[0].status) ? [] : [`expected 403 or 404, got ${got.responses[0]?.status}`]) },
  { name: "auth: pass nobody may read discovery /apis", send: get("/apis", { who: "nobody" }), want: [{ status: 200, json: (b) => (b?.kind === "APIGroupList" ? undefined : `not an APIGroupList: ${JSON.stringify(b)?.slice(0, 200)}`) }], closed: false },
  { name: "auth: pass a-only on cluster b → 404, b never asked", send: get(`${B}/version`, { who: "aOnly" }), want: [NOT_FOUND], closed: false },
  { name: "auth: pass a-only on cluster a → 200", send: get(`${A}/api/v1/namespaces`, { who: "aOnly" }), want: [ok("a", "/api/v1/namespaces")], closed: false, records: { a: 1 } },
  { name: "auth: a token in the query string is not a credential", send: (c) => get(`${A}/version?access_token=${c.tokens.admin}`, { who: null })(c), want: [UNAUTHORIZED], closed: false },
);

// --- identity headers -------------------------------------------------------------------------------

const IDENTITY_HEADERS = [
  "X-Remote-User: system:admin",
  "X-Remote-Group: system:masters",
  "X-Remote-Extra-Scopes: all",
  "x-remote-user: lower",
  "X-REMOTE-USER: UPPER",
  "X-Forwarded-For: 10.0.0.1",
  "X-Forwarded-User: system:admin",
  "X-Forwarded-Host: evil.example",
  "Forwarded: for=10.0.0.1;by=evil",
  "X-Real-IP: 10.0.0.1",
  "Cookie: session=stolen",
  "X-Client-Cert: -----BEGIN CERTIFICATE-----",
  "Remote-User: system:admin",
  "X-Auth-Request-User: system:admin",
  "X_Remote_User: system:admin",
  "X_Remote_Group: system:masters",
  "Impersonate_User: system:admin",
  "Impersonate_Group: system:masters",
  "Proxy-Authorization: Basic YWRtaW46YWRtaW4=",
];
for (const line of IDENTITY_HEADERS) {
  add({
    name: `identity headers: ${line.split(":")[0]} from the admin is not forwarded`,
    send: get(`${A}/version`, { headers: [line] }),
    want: [ok("a", "/version")],
    closed: false,
    records: { a: 1 },
  });
}
add(
  { name: "identity headers: all of them at once, from the admin", send: get(`${A}/api/v1/namespaces`, { headers: IDENTITY_HEADERS }), want: [ok("a", "/api/v1/namespaces")], closed: false, records: { a: 1 } },
  { name: "identity headers: all of them at once, from pass a-only", send: get(`${A}/api/v1/namespaces`, { who: "aOnly", headers: IDENTITY_HEADERS }), want: [ok("a", "/api/v1/namespaces")], closed: false, records: { a: 1 } },
  { name: "identity headers: Impersonate-User from a pass that may not impersonate → 403", send: get(`${A}/api/v1/namespaces/default/pods`, { who: "aEdit", headers: ["Impersonate-User: system:admin"] }), want: [FORBIDDEN], closed: false },
  { name: "identity headers: Impersonate-User + Impersonate-Group from a pass that may not impersonate → 403", send: get(`${A}/api/v1/namespaces/default/pods`, { who: "aEdit", headers: ["Impersonate-User: alice", "Impersonate-Group: system:masters"] }), want: [FORBIDDEN], closed: false },
  { name: "identity headers: Impersonate-User on discovery from a pass that may not impersonate is not forwarded", send: get(`${A}/version`, { who: "aEdit", headers: ["Impersonate-User: system:admin"] }), want: [ok("a", "/version")], closed: false, records: { a: 1 } },
  { name: "identity headers: X-Remote-User on an exec upgrade is not forwarded", send: get(EXEC_Q, { headers: [...WS, "X-Remote-User: system:admin", "X_Remote_Group: system:masters", "Cookie: a=b"] }), want: [SWITCHED], closed: "tunnel", records: { a: 1 }, check: echo("identity-tunnel") },
  { name: "identity headers: X-Forwarded-For and Forwarded on a SPDY exec are not forwarded", send: rq("POST", EXEC_Q, { headers: [...SPDY, "Content-Length: 0", "X-Forwarded-For: 1.2.3.4", "Forwarded: for=1.2.3.4", "Impersonate_User: root"] }), want: [SWITCHED], closed: "tunnel", records: { a: 1 }, check: echo("identity-spdy") },
);

// -------------------------------------------------------------------------------------------------
// setup

async function createPass(kpass: KpassProcess, name: string, spec: Record<string, unknown>): Promise<string> {
  const response = await kpass.api("POST", PASSES, { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec });
  const body = await response.json();
  if (response.status !== 201) throw new Error(`creating pass ${name}: ${response.status} ${JSON.stringify(body)}`);
  return body.status.token as string;
}

async function registerCluster(kpass: KpassProcess, name: string, endpoint: { url: string; caPem: string }, token: string): Promise<void> {
  const response = await kpass.api("POST", CLUSTERS, clusterManifest(name, endpoint as unknown as TestCluster, { token }));
  if (response.status !== 201) throw new Error(`registering cluster ${name}: ${response.status} ${await response.text()}`);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

beforeAll(async () => {
  const [a, b, f] = await Promise.all([
    startRawCluster({ name: "a", token: TOKEN_A }),
    startRawCluster({ name: "b", token: TOKEN_B }),
    startRawCluster({ name: "f", token: TOKEN_F }),
  ]);
  faulty = f;
  hole = startBlackhole();
  // The health prober runs when a cluster is registered; no periodic probe during the corpus.
  const kpass = await startKpass({ args: ["--probe-interval", "1h"] });
  await registerCluster(kpass, "a", a, TOKEN_A);
  await registerCluster(kpass, "b", b, TOKEN_B);
  await registerCluster(kpass, "f", f, TOKEN_F);
  await registerCluster(kpass, "hole", { url: hole.url, caPem: a.caPem }, "hole-token");
  await registerCluster(kpass, "gone", { url: `https://127.0.0.1:${refusedPort()}`, caPem: a.caPem }, "gone-token");
  const admin = kpass.adminToken;
  const nobody = await createPass(kpass, "nobody", { user: "nobody" });
  const aOnly = await createPass(kpass, "a-only", { user: "alice", clusters: { names: ["a"] }, roles: ["cluster-admin"] });
  const aEdit = await createPass(kpass, "a-edit", { user: "eddie", clusters: { names: ["a"] }, roles: ["edit"] });
  const gonePass = await createPass(kpass, "gone", { user: "ghost", clusters: { names: ["*"] }, roles: ["cluster-admin"] });
  const deleted = await kpass.api("DELETE", `${PASSES}/gone`);
  if (deleted.status !== 200) throw new Error(`deleting pass gone: ${deleted.status}`);

  const header = decodeProtectedHeader(admin);
  const claims = decodeJwt(admin);
  const { privateKey } = await generateKeyPair(header.alg ?? "ES256");
  const forged = await new SignJWT(claims).setProtectedHeader({ ...header, alg: header.alg ?? "ES256" }).sign(privateKey);
  const past = Math.floor(Date.now() / 1000) - 3600;
  const expired = await new SignJWT({ ...claims, exp: past }).setProtectedHeader({ ...header, alg: header.alg ?? "ES256" }).sign(privateKey);
  const [h, , s] = admin.split(".") as [string, string, string];
  const expiredTampered = `${h}.${b64url({ ...claims, exp: past })}.${s}`;
  const algNone = `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims)}.`;
  const tampered = `${admin.slice(0, -2)}${admin.endsWith("AA") ? "BB" : "AA"}`;
  ctx = { kpass, a, b, tokens: { admin, nobody, aOnly, aEdit, gonePass, forged, expired, expiredTampered, algNone, tampered } };
});

afterAll(async () => {
  await ctx?.kpass.stop();
  await Promise.all([ctx?.a.stop(), ctx?.b.stop(), faulty?.stop()]);
  hole?.stop();
  if (ctx) removeDataDir(ctx.kpass.dataDir);
});

// -------------------------------------------------------------------------------------------------
// the fixture itself, without kpass: proves the corpus's instruments work

describe("raw cluster fixture (direct, no kpass)", () => {
  const direct = () => RawTlsConnection.open(ctx.a.url, ctx.a.caPem);
  const line = (method: string, target: string, extra = "", body = "") => `${method} ${target} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN_A}\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;

  test("answers, records, keeps alive and pipelines; 401 without its token", async () => {
    ctx.a.clear();
    const conn = await direct();
    conn.write(line("GET", "/version") + line("POST", "/x", "", "hello") + "GET /y HTTP/1.1\r\nHost: a\r\n\r\n");
    const { responses } = await conn.responses(3);
    conn.close();
    expect(responses.map((r) => r.status)).toEqual([200, 200, 401]);
    expect(responses[0]!.json()).toEqual({ kind: "Probe", cluster: "a", path: "/version" });
    expect(responses[2]!.json()).toMatchObject({ kind: "Status", code: 401 });
    expect(caseRequests(ctx.a).map((r) => [r.method, r.target, r.body.toString()])).toEqual([["GET", "/version", ""], ["POST", "/x", "hello"], ["GET", "/y", ""]]);
    expect(caseRequests(ctx.a)[0]!.headerLines).toContain(`Authorization: Bearer ${TOKEN_A}`);
  });

  test("decodes chunked bodies", async () => {
    ctx.a.clear();
    const conn = await direct();
    conn.write(`POST /c HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN_A}\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\n\r\n`);
    const { responses } = await conn.responses(1);
    conn.close();
    expect(responses[0]?.status).toBe(200);
    expect(caseRequests(ctx.a)[0]?.body.toString()).toBe("hello!");
  });

  test("an upgrade to a non-exec path is answered 200 and the next request is read (what exposes smuggling)", async () => {
    ctx.a.clear();
    const conn = await direct();
    conn.write(line("GET", "/version", "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n") + SMUGGLED_DELETE);
    const { responses } = await conn.responses(2);
    conn.close();
    expect(responses.map((r) => r.status)).toEqual([200, 200]);
    expect(caseRequests(ctx.a).map((r) => r.method)).toEqual(["GET", "DELETE"]);
    // The corpus's invariant catches exactly this.
    expect(recordedProblems(ctx.a).some((p) => p.includes("smuggled"))).toBe(true);
  });

  test("exec switches (101, Sec-WebSocket-Accept) and echoes; pods/denied/exec is 403 and the connection reads on", async () => {
    ctx.a.clear();
    const conn = await direct();
    conn.write(line("GET", "/api/v1/namespaces/default/pods/p/exec?command=id", `${WS.join("\r\n")}\r\n`));
    const switched = await conn.responses(1);
    expect(switched.responses[0]?.status).toBe(101);
    expect(switched.responses[0]?.header("sec-websocket-accept")).toBe(WS_ACCEPT);
    conn.write("echo-me");
    await conn.waitFor(() => conn.parse().tunnel?.toString().includes("echo-me") ?? false);
    expect(conn.parse().tunnel?.toString()).toBe("echo-me");
    conn.close();

    const denied = await direct();
    denied.write(line("POST", "/api/v1/namespaces/default/pods/denied/exec", `${SPDY.join("\r\n")}\r\n`) + line("GET", "/after"));
    const { responses } = await denied.responses(2);
    denied.close();
    expect(responses.map((r) => r.status)).toEqual([403, 200]);
    expect(caseRequests(ctx.a).map((r) => r.target)).toEqual(["/api/v1/namespaces/default/pods/p/exec?command=id", "/api/v1/namespaces/default/pods/denied/exec", "/after"]);
  });

  test("the response reader handles chunked, close-delimited and cut-short bodies", async () => {
    const { parseResponses } = await import("./harness/raw-tls.ts");
    const chunked = Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil-close");
    expect(parseResponses(chunked, false).responses.map((r) => [r.status, r.text])).toEqual([[200, "abc"], [204, ""]]);
    expect(parseResponses(chunked, true).responses.map((r) => [r.status, r.text, r.complete])).toEqual([[200, "abc", true], [204, "", true], [200, "until-close", true]]);
    const short = parseResponses(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), true).responses[0];
    expect(short?.complete).toBe(false);
    expect(hasDotSegment("/a/%2e%2e/b")).toBe(true);
    expect(hasDotSegment("/a/..%5cb")).toBe(true);
    expect(hasDotSegment("/a/%252e%252e/b")).toBe(false);
    expect(hasDotSegment("/a/b?x=/../")).toBe(false);
  });
});

// -------------------------------------------------------------------------------------------------

describe(`hostile-input corpus (${CASES.length} cases)`, () => {
  test("the corpus has at least 200 cases with unique names", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(200);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  for (const c of CASES) {
    test(c.name, async () => {
      expect(await runCase(c)).toEqual([]);
    });
  }
});

// -------------------------------------------------------------------------------------------------

describe("faults toward clusters", () => {
  async function oneRequest(target: string, timeoutMs: number): Promise<{ conn: RawTlsConnection; response?: RawResponse }> {
    const conn = await open();
    conn.write(get(target)(ctx));
    const { responses } = await conn.responses(1, timeoutMs);
    return { conn, response: responses[0] };
  }

  async function stillServesA(): Promise<void> {
    expect(await healthProblems()).toEqual([]);
  }

  for (const name of ["hole", "gone"] as const) {
    test(`a ${name === "hole" ? "blackhole" : "refused"} cluster answers 503 naming it, while cluster a keeps answering`, async () => {
      const pending = oneRequest(`${CLUSTERS}/${name}/proxy/version`, 15_000);
      await stillServesA();
      const { conn, response } = await pending;
      conn.close();
      expect(response?.status).toBe(503);
      const body = response?.json();
      expect(body).toMatchObject({ kind: "Status", code: 503, reason: "ServiceUnavailable" });
      expect(String(body?.message)).toContain(`"${name}"`);
      await stillServesA();
    });
  }

  test("a cluster that stalls its body: the client sees a short body, kpass keeps serving", async () => {
    const conn = await open();
    conn.write(get(`${CLUSTERS}/f/proxy/fault/stall-body`)(ctx));
    await conn.waitFor(() => conn.raw().includes("partial"), 5000);
    await Bun.sleep(500);
    const { responses } = conn.parse();
    expect(responses.length).toBe(0); // the body never completes
    expect(conn.raw().toString("latin1")).toStartWith("HTTP/1.1 200");
    conn.close();
    await stillServesA();
  });

  test("a cluster that resets mid-body: the client sees a broken body and a closed connection", async () => {
    const conn = await open();
    conn.write(get(`${CLUSTERS}/f/proxy/fault/reset-mid-body`)(ctx));
    expect(await conn.waitClosed(10_000)).toBe(true);
    const { responses } = conn.parse();
    const r = responses[0];
    if (r && r.status === 200) expect(r.complete).toBe(false);
    else if (r) expect(r.json()).toMatchObject({ kind: "Status", code: r.status });
    conn.close();
    await stillServesA();
  });

  test("a cluster slower than --upstream-timeout answers 504 Timeout naming it", async () => {
    const { conn, response } = await oneRequest(`${CLUSTERS}/f/proxy/fault/slow-head?ms=8000`, 15_000);
    conn.close();
    expect(response?.status).toBe(504);
    expect(response?.json()).toMatchObject({ kind: "Status", code: 504 });
    expect(String(response?.json()?.message)).toContain(`"f"`);
    await stillServesA();
  });
});
