/**
 * One table of refusal cases for a cluster-bound request, run against every entry point such a
 * request has (the model is Hono's router/common.case.test.ts: the cases are data, and each
 * implementation runs every case):
 *
 * - REST: an ordinary `POST …/clusters/{name}/proxy/api/v1/namespaces/default/pods/web-0/exec`;
 * - upgrade (SPDY/3.1): the same request with `Connection: Upgrade`, `Upgrade: SPDY/3.1`;
 * - upgrade (websocket): the same request with `Connection: Upgrade`, `Upgrade: websocket`.
 *
 * All three are POST to the same exec path, written byte for byte the same over raw TLS except for
 * the upgrade headers, so authorization sees the same verb, resource and subresource. What must
 * hold for every case on every entry point:
 *
 * - the HTTP status of the case, and a Kubernetes Status body: `kind: Status`, `code` = the status,
 *   the case's `reason`, a `message` saying why;
 * - a 401 carries `WWW-Authenticate`;
 * - exactly one audit line for the refusal (found by a marker in the query), with the same status
 *   and message, naming the pass once one was authenticated;
 * - nothing reached the cluster.
 *
 * And across entry points: the same status, reason, message, WWW-Authenticate and audit line
 * (status, pass, user, cluster, message) — the refusal must not depend on how the request came in.
 *
 * Refusals before authentication are audited at most 10 per second per source: every request here
 * waits PACE_MS after the previous one, so no window holds more than 7.
 *
 * Run: node_modules/.bin/bun test test/admission-cases.test.ts
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from "jose";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { auditLines, clusterManifest, removeDataDir, startKpass, type KpassProcess } from "./harness/kpass.ts";
import { RawTlsConnection } from "./harness/raw-tls.ts";

const G = "/apis/cluster.kpass.dev/v1beta1";
const CLUSTERS = `${G}/clusters`;
const PASSES = `${G}/passes`;
const EXEC_PATH = "/api/v1/namespaces/default/pods/web-0/exec";
const EXEC_QUERY = "command=ls&stdout=1";
/** Gap between any two requests of this file, so that pre-auth refusals stay under the audit rate limit. */
const PACE_MS = 150;
/** A case runs its three requests and may wait up to 5 s for audit lines that never come. */
const CASE_TIMEOUT_MS = 30_000;

// -------------------------------------------------------------------------------------------------
// entry points

interface EntryPoint {
  name: string;
  /** Header lines added to the case's request, verbatim. */
  headers: string[];
}

const WS_KEY = Buffer.from("kpass-admission-k").toString("base64");
const REST: EntryPoint = { name: "REST", headers: [] };
const SPDY: EntryPoint = { name: "upgrade (SPDY/3.1)", headers: ["Connection: Upgrade", "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"] };
const WEBSOCKET: EntryPoint = {
  name: "upgrade (websocket)",
  headers: ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", `Sec-WebSocket-Key: ${WS_KEY}`, "Sec-WebSocket-Protocol: v5.channel.k8s.io"],
};
const ENTRY_POINTS = [REST, SPDY, WEBSOCKET];

// -------------------------------------------------------------------------------------------------
// the cases

/** Whose token goes in Authorization. */
type Who = "admin" | "editor" | "viewer" | "elsewhere" | "revoked" | "expired" | "unknownSigner";

/** Pass names, for the audit line (the token of `unknownSigner` names the editor pass but is not kpass's). */
const PASS_OF: Record<Who, string> = { admin: "admin", editor: "editor", viewer: "viewer", elsewhere: "elsewhere", revoked: "revoked", expired: "expired", unknownSigner: "" };

interface Case {
  name: string;
  /** Whose bearer token is sent; null: no Authorization header. Ignored when `authorization` is given. */
  who: Who | null;
  /** An Authorization header value sent verbatim. */
  authorization?: string;
  /** Default "c1". */
  cluster?: string;
  /** Path on the cluster, as written on the wire. Default EXEC_PATH. */
  path?: string;
  /** Extra header lines. */
  headers?: string[];
  want: {
    status: number;
    reason: string;
    /** Part of the Status message that says why. */
    message: string;
    /** The pass the audit line names ("" before authentication). */
    auditPass: string;
  };
}

const unauthenticated = (message: string) => ({ status: 401, reason: "Unauthorized", message, auditPass: "" });

const CASES: Case[] = [
  { name: "no Authorization header", who: null, want: unauthenticated("no bearer token") },
  { name: "an Authorization header that is not a bearer token", who: null, authorization: "Basic dXNlcjpwYXNz", want: unauthenticated("must be a bearer token") },
  { name: "a malformed bearer token", who: null, authorization: "Bearer not-a-kpass-token", want: unauthenticated("not a valid kpass pass token") },
  { name: "a well-formed token kpass did not sign", who: "unknownSigner", want: unauthenticated("not a valid kpass pass token") },
  { name: "the token of a deleted pass", who: "revoked", want: unauthenticated('pass "revoked" has been revoked') },
  { name: "the token of an expired pass", who: "expired", want: unauthenticated('pass "expired" expired at') },
  // A cluster the pass does not reach does not exist for it: the same 404 as an unknown one.
  { name: "a pass that does not reach the cluster", who: "elsewhere", want: { status: 404, reason: "NotFound", message: 'clusters.cluster.kpass.dev "c1" not found', auditPass: "elsewhere" } },
  { name: "a pass whose rules deny exec", who: "viewer", want: { status: 403, reason: "Forbidden", message: 'pods "web-0" is forbidden: User "viewer" cannot create resource "pods/exec" in API group "" in the namespace "default": the pass "viewer" on cluster "c1" does not allow it', auditPass: "viewer" } },
  { name: "an unknown cluster", who: "editor", cluster: "nope", want: { status: 404, reason: "NotFound", message: '"nope" not found', auditPass: "editor" } },
  { name: "%00 in the proxied path", who: "editor", path: "/api/v1/namespaces/default/pods/web-0%00/exec", want: { status: 400, reason: "BadRequest", message: "invalid", auditPass: "editor" } },
  { name: "an invalid percent-encoding in the proxied path", who: "editor", path: "/api/v1/namespaces/default/pods/web-%zz/exec", want: { status: 400, reason: "BadRequest", message: "invalid", auditPass: "editor" } },
  { name: "an invalid percent-encoding in the cluster name", who: "editor", cluster: "c%zz1", want: { status: 400, reason: "BadRequest", message: "invalid percent-encoding", auditPass: "editor" } },
  // The edge's spec for dot segments (see edge-hostile.test.ts): 404, nothing forwarded.
  { name: "a %2e%2e segment in the proxied path", who: "editor", path: "/api/v1/namespaces/default/pods/web-0/%2e%2e/web-0/exec", want: { status: 404, reason: "NotFound", message: "could not find the requested resource", auditPass: "editor" } },
  // Authentication comes first, as in kube-apiserver: without a token, a bad path is a 401.
  { name: "%00 in the proxied path and no Authorization header", who: null, path: "/api/v1/namespaces/default/pods/web-0%00/exec", want: unauthenticated("no bearer token") },
  { name: "--as a user the pass may not impersonate", who: "editor", headers: ["Impersonate-User: someone"], want: { status: 403, reason: "Forbidden", message: 'users "someone" is forbidden: User "editor" cannot impersonate resource "users" in API group "" at the cluster scope: the pass "editor" on cluster "c1" has no impersonate rule for user "someone"', auditPass: "editor" } },
  { name: "an Impersonate-* header Kubernetes does not define", who: "editor", headers: ["Impersonate-Foo: bar"], want: { status: 403, reason: "Forbidden", message: "impersonate-foo", auditPass: "editor" } },
];

// -------------------------------------------------------------------------------------------------
// setup

let kpass: KpassProcess;
let cluster: TestCluster;
const tokens = {} as Record<Who, string>;

async function createPass(name: string, spec: Record<string, unknown>): Promise<string> {
  const response = await kpass.api("POST", PASSES, { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name }, spec });
  const body = await response.json();
  if (response.status !== 201) throw new Error(`creating pass ${name}: ${response.status} ${JSON.stringify(body)}`);
  return body.status.token as string;
}

beforeAll(async () => {
  cluster = await startTestCluster({ credential: { type: "token", token: "member-token" } });
  kpass = await startKpass({ args: ["--probe-interval", "1h"] });
  const registered = await kpass.api("POST", CLUSTERS, clusterManifest("c1", cluster, { token: "member-token" }));
  if (registered.status !== 201) throw new Error(`registering c1: ${registered.status} ${await registered.text()}`);
  tokens.admin = kpass.adminToken;
  tokens.editor = await createPass("editor", { user: "editor", clusters: { names: ["c1"] }, roles: ["edit"] });
  tokens.viewer = await createPass("viewer", { user: "viewer", clusters: { names: ["c1"] }, roles: ["view"] });
  tokens.elsewhere = await createPass("elsewhere", { user: "elsewhere", clusters: { names: ["other"] }, roles: ["cluster-admin"] });
  tokens.expired = await createPass("expired", { user: "expired", clusters: { names: ["c1"] }, roles: ["cluster-admin"], expiresAt: "2000-01-01T00:00:00Z" });
  tokens.revoked = await createPass("revoked", { user: "revoked", clusters: { names: ["c1"] }, roles: ["cluster-admin"] });
  const deleted = await kpass.api("DELETE", `${PASSES}/revoked`);
  if (deleted.status !== 200) throw new Error(`deleting pass revoked: ${deleted.status} ${await deleted.text()}`);
  // The editor's claims and header, signed by a key kpass never saw.
  const header = decodeProtectedHeader(tokens.editor);
  const { privateKey } = await generateKeyPair(header.alg ?? "ES256");
  tokens.unknownSigner = await new SignJWT(decodeJwt(tokens.editor)).setProtectedHeader({ ...header, alg: header.alg ?? "ES256" }).sign(privateKey);
});

afterAll(async () => {
  await kpass?.stop();
  await cluster?.stop();
  if (kpass) removeDataDir(kpass.dataDir);
});

// -------------------------------------------------------------------------------------------------
// running a case

interface AuditLine {
  pass?: string;
  user?: string;
  cluster?: string;
  path?: string;
  status?: number;
  message?: string;
}

/** What one entry point answered to one case. */
interface Observation {
  entry: string;
  status: number;
  /** Parsed Status body, undefined when the body was not JSON. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
  wwwAuthenticate?: string;
  audit: AuditLine[];
  /** Requests the cluster recorded for this request. */
  reachedCluster: number;
}

let lastRequestAt = 0;
async function paced(): Promise<void> {
  const wait = lastRequestAt + PACE_MS - Date.now();
  if (wait > 0) await Bun.sleep(wait);
  lastRequestAt = Date.now();
}

/** The request of `c` as written on the wire, with `marker` in the query to find its audit line. */
function requestBytes(c: Case, entry: EntryPoint, marker: string): string {
  const target = `${CLUSTERS}/${c.cluster ?? "c1"}/proxy${c.path ?? EXEC_PATH}?${EXEC_QUERY}&case=${marker}`;
  const lines = [`POST ${target} HTTP/1.1`, "Host: localhost"];
  const authorization = c.authorization ?? (c.who ? `Bearer ${tokens[c.who]}` : undefined);
  if (authorization !== undefined) lines.push(`Authorization: ${authorization}`);
  lines.push(...(c.headers ?? []), ...entry.headers);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

function readAudit(): AuditLine[] {
  try {
    return readFileSync(join(kpass.dataDir, "audit.log"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditLine);
  } catch {
    return [];
  }
}

async function send(c: Case, entry: EntryPoint, marker: string): Promise<Omit<Observation, "audit" | "reachedCluster">> {
  await paced();
  const conn = await RawTlsConnection.open(kpass.url, kpass.caPem);
  try {
    conn.write(requestBytes(c, entry, marker));
    const { responses, error } = await conn.responses(1, 10_000);
    const r = responses[0];
    if (!r) return { entry: entry.name, status: 0, body: undefined, text: `no response${error ? ` (${error})` : ""}: ${JSON.stringify(conn.raw().toString("latin1").slice(0, 300))}` };
    return { entry: entry.name, status: r.status, body: r.json(), text: r.text.slice(0, 500), wwwAuthenticate: r.header("www-authenticate") };
  } finally {
    conn.close();
  }
}

/** Runs one case on every entry point (once; tests share the result), then collects audit lines. */
const observed = new Map<string, Promise<Observation[]>>();
function observe(c: Case): Promise<Observation[]> {
  let result = observed.get(c.name);
  if (!result) {
    result = (async () => {
      const id = createHash("sha256").update(c.name).digest("hex").slice(0, 10);
      const markers = ENTRY_POINTS.map((_, i) => `${id}-${i}`);
      const answers = [];
      for (const [i, entry] of ENTRY_POINTS.entries()) answers.push(await send(c, entry, markers[i]!));
      const has = (lines: AuditLine[], marker: string) => lines.some((l) => l.path?.includes(`case=${marker}`));
      // Bounded wait for every line; a line that never comes shows up as 0 lines below.
      await auditLines(kpass, (lines) => markers.every((m) => has(lines, m))).catch(() => undefined);
      const audit = readAudit();
      return answers.map((answer, i) => ({
        ...answer,
        audit: audit.filter((l) => l.path?.includes(`case=${markers[i]}`)),
        reachedCluster: cluster.requests.filter((r) => r.query.includes(`case=${markers[i]}`)).length,
      }));
    })();
    observed.set(c.name, result);
  }
  return result;
}

/** Problems of one entry point's answer to one case, against what the case wants. */
function expectationProblems(c: Case, o: Observation): string[] {
  const problems: string[] = [];
  const got = `${o.status} ${o.text}`;
  if (o.status !== c.want.status) problems.push(`status: expected ${c.want.status}, got ${got}`);
  const body = o.body;
  if (body?.kind !== "Status") problems.push(`body is not a Status: ${o.text}`);
  else {
    if (body.code !== o.status) problems.push(`Status code ${body.code} differs from HTTP status ${o.status}`);
    if (body.reason !== c.want.reason) problems.push(`reason: expected ${c.want.reason}, got ${JSON.stringify(body.reason)}`);
    if (typeof body.message !== "string" || !body.message.includes(c.want.message)) problems.push(`message: expected it to contain ${JSON.stringify(c.want.message)}, got ${JSON.stringify(body.message)}`);
  }
  if (o.status === 401 && !o.wwwAuthenticate) problems.push("401 without WWW-Authenticate");
  if (o.audit.length !== 1) problems.push(`audit: expected 1 line, got ${o.audit.length}: ${JSON.stringify(o.audit)}`);
  const line = o.audit[0];
  if (line) {
    if (line.status !== o.status) problems.push(`audit status ${line.status}, response status ${o.status}`);
    if (line.message !== body?.message) problems.push(`audit message ${JSON.stringify(line.message)}, response message ${JSON.stringify(body?.message)}`);
    if ((line.pass ?? "") !== c.want.auditPass) problems.push(`audit pass: expected ${JSON.stringify(c.want.auditPass)}, got ${JSON.stringify(line.pass)}`);
  }
  if (o.reachedCluster !== 0) problems.push(`the cluster received ${o.reachedCluster} request(s) for a refused request`);
  return problems;
}

/** What must be the same on every entry point: the answer and its audit line. */
function comparable(o: Observation) {
  const line = o.audit[0];
  return {
    status: o.status,
    code: o.body?.code,
    reason: o.body?.reason,
    message: o.body?.message,
    wwwAuthenticate: o.wwwAuthenticate ?? null,
    auditLines: o.audit.length,
    audit: line ? { status: line.status, pass: line.pass, user: line.user, cluster: line.cluster, message: line.message } : null,
  };
}

function differenceProblems(observations: Observation[]): string[] {
  const [rest, ...upgrades] = observations.map((o) => ({ entry: o.entry, fields: comparable(o) }));
  const problems: string[] = [];
  for (const upgrade of upgrades) {
    for (const key of Object.keys(rest!.fields) as (keyof ReturnType<typeof comparable>)[]) {
      const a = JSON.stringify(rest!.fields[key]);
      const b = JSON.stringify(upgrade.fields[key]);
      if (a !== b) problems.push(`${key}: ${rest!.entry} ${a} | ${upgrade.entry} ${b}`);
    }
  }
  return problems;
}

// -------------------------------------------------------------------------------------------------
// the table, once per entry point

test("the table has unique case names and covers every entry point", () => {
  expect(CASES.length).toBeGreaterThanOrEqual(9);
  expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  expect(ENTRY_POINTS.map((e) => e.name)).toEqual(["REST", "upgrade (SPDY/3.1)", "upgrade (websocket)"]);
});

test("control: the same request with the admin token leaves kpass on every entry point", async () => {
  const control: Case = { name: "control", who: "admin", want: { status: 0, reason: "", message: "", auditPass: "admin" } };
  const observations = await observe(control);
  for (const o of observations) {
    expect(o.reachedCluster, `${o.entry}: ${o.status} ${o.text}`).toBe(1);
    expect(o.audit.map((l) => l.pass), o.entry).toEqual(["admin"]);
  }
}, CASE_TIMEOUT_MS);

for (const entry of ENTRY_POINTS) {
  describe(`${entry.name} (${CASES.length} cases)`, () => {
    for (const c of CASES) {
      test(c.name, async () => {
        const o = (await observe(c)).find((x) => x.entry === entry.name)!;
        expect(expectationProblems(c, o)).toEqual([]);
      }, CASE_TIMEOUT_MS);
    }
  });
}

describe(`REST and upgrade refuse alike (${CASES.length} cases)`, () => {
  for (const c of CASES) {
    test(c.name, async () => {
      expect(differenceProblems(await observe(c))).toEqual([]);
    }, CASE_TIMEOUT_MS);
  }
});
