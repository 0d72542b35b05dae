/**
 * ClusterAdmission, the one admission step for REST and upgrade requests. Everything is real
 * (tokens, stores, the Authenticator, transports, stream leases) except the audit sink, which
 * only collects events: the contract pinned here is that every refusal is thrown AND written
 * exactly once, and that an admitted request is written once, when its entry point finishes it.
 * Nothing is sent: a plan is only built, so the cluster's endpoint (port 1) is never dialled.
 */
import { FileSecrets } from "../../src/store/secrets.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditEvent } from "../../src/audit/audit-log.ts";
import { Authenticator } from "../../src/auth/authenticate.ts";
import { OpenStreams, type StreamLease } from "../../src/auth/open-streams.ts";
import { loadOrCreateSigningKey } from "../../src/auth/signing-key.ts";
import { TokenService } from "../../src/auth/tokens.ts";
import { API_VERSION, CLUSTERS_PREFIX } from "../../src/core/api-group.ts";
import type { Cluster } from "../../src/core/cluster.ts";
import type { Pass, PassSpec, PolicyRule } from "../../src/core/pass.ts";
import { ApiError } from "../../src/core/status.ts";
import { ClusterAdmission, type ClusterRequest, type EntryChecks } from "../../src/proxy/cluster-admission.ts";
import { ClusterTransports } from "../../src/proxy/cluster-transport.ts";
import type { ProxyTarget } from "../../src/proxy/proxy-path.ts";
import { FilePersistence } from "../../src/store/file-persistence.ts";
import { ObjectStore } from "../../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../../src/store/local-backend.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-cluster-admission-"));
const CLUSTER_TOKEN = "cluster-sa-token-0123456789";
const SOURCE = "203.0.113.7:51234";
const MAX_PER_PASS = 2;

const teamA = (verbs: string[], resources: string[]): PolicyRule => ({ verbs, apiGroups: [""], resources, namespaces: ["team-a"] });

const events: AuditEvent[] = [];
const audit = {
  enabled: true,
  record(event: AuditEvent) {
    events.push(event);
  },
};

let passes: ObjectStore<Pass>;
let clusters: ObjectStore<Cluster>;
let transports: ClusterTransports;
let streams: OpenStreams;
let tokens: TokenService;
let admission: ClusterAdmission;
/** Tokens by pass name. */
const tokenOf: Record<string, string> = {};

function passObject(name: string, spec: PassSpec): Pass {
  return { apiVersion: API_VERSION, kind: "Pass", metadata: { name }, spec } as Pass;
}

function clusterObject(name: string, labels?: Record<string, string>): Cluster {
  return {
    apiVersion: API_VERSION,
    kind: "Cluster",
    metadata: { name, labels },
    spec: { access: { endpoint: "https://127.0.0.1:1", credential: { type: "ServiceAccountToken", serviceAccountToken: CLUSTER_TOKEN } } },
  } as Cluster;
}

async function issue(name: string, spec: PassSpec): Promise<void> {
  const pass = await passes.create(passObject(name, spec));
  tokenOf[name] = await tokens.mint(pass.metadata.name, pass.metadata.uid);
}

beforeAll(async () => {
  const clock = new RevisionClock();
  const persistence = new FilePersistence(join(dir, "objects"));
  passes = new ObjectStore<Pass>("passes", new LocalBackend("passes", clock, persistence));
  clusters = new ObjectStore<Cluster>("clusters", new LocalBackend("clusters", clock, persistence));
  tokens = new TokenService(await loadOrCreateSigningKey(new FileSecrets(dir), "signing-key.json"));
  transports = new ClusterTransports();
  streams = new OpenStreams(passes, { maxPerPass: MAX_PER_PASS });
  admission = new ClusterAdmission({ clusters, transports, authenticator: new Authenticator(tokens, passes, streams), audit });

  await clusters.create(clusterObject("prod", { env: "prod" }));
  await clusters.create(clusterObject("staging", { env: "staging" }));
  await issue("alice", {
    user: "alice@example.com",
    groups: ["devs"],
    clusters: { names: ["prod"] },
    rules: [teamA(["get", "list", "watch"], ["pods"]), teamA(["create"], ["pods/exec"])],
  });
  // Separate passes for stream leases, so that lease counts do not leak between tests.
  await issue("watcher", { user: "watcher", clusters: { names: ["prod"] }, rules: [teamA(["list", "watch"], ["pods"])] });
  await issue("edited", { user: "edited", clusters: { names: ["prod"] }, rules: [teamA(["list", "watch"], ["pods"])] });
});

afterAll(() => {
  streams.stop();
  transports.forget("prod");
  transports.forget("staging");
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  events.length = 0;
});

const REST: EntryChecks = { holdsStream: () => false };
const WATCHES: EntryChecks = { holdsStream: (plan) => plan.decision.attributes.verb === "watch" };
const PODS = "/api/v1/namespaces/team-a/pods";

function proxied(cluster: string, path: string): string {
  return `${CLUSTERS_PREFIX}${cluster}/proxy${path}`;
}

function request(target: string, options: { pass?: string; method?: string; headers?: Record<string, string>; upgrade?: boolean } = {}): ClusterRequest {
  const headers = new Headers(options.headers);
  if (options.pass) headers.set("authorization", `Bearer ${tokenOf[options.pass]}`);
  return { target, method: options.method ?? "GET", headers, upgrade: options.upgrade ?? false, sourceIP: SOURCE };
}

async function refusal(req: ClusterRequest, checks: EntryChecks = REST): Promise<ApiError> {
  try {
    await admission.admit(req, checks);
  } catch (error) {
    // The entry points write error.toStatus(): anything else escaping would be a 500 with a stack.
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error(`expected ${req.target} to be refused`);
}

/**
 * The single audit event a refusal must leave, checked against the error it threw (a refusal
 * records the raw request target; `target` is checked where a test names it).
 */
function refusalEvent(error: ApiError, expected: { target?: string; pass: string; user: string; cluster: string }): AuditEvent {
  expect(events).toHaveLength(1);
  const event = events[0]!;
  expect(event).toMatchObject({ ...expected, status: error.code, message: error.message, sourceIP: SOURCE, bytesIn: 0, bytesOut: 0 });
  return event;
}

const ALICE = { pass: "alice", user: "alice@example.com" };

describe("each refusal is thrown and audited once", () => {
  test("a NUL in the proxied path: 400, after authentication (the line names the pass)", async () => {
    const target = proxied("prod", `${PODS}/%00`);
    const error = await refusal(request(target, { pass: "alice" }));
    expect(error.code).toBe(400);
    expect(error.reason).toBe("BadRequest");
    expect(error.message).toBe(`invalid proxy path "${PODS}/%00": "." and ".." segments and NUL are not allowed`);
    const event = refusalEvent(error, { target, ...ALICE, cluster: "prod" });
    expect(event.attributes).toBeUndefined();
  });

  test("a target that is not a cluster proxy path: 400, no cluster named", async () => {
    const seen: (ProxyTarget | undefined)[] = [];
    const error = await refusal(request("/api/v1/pods", { pass: "alice" }), { ...REST, onTarget: (t) => void seen.push(t) });
    expect(error.code).toBe(400);
    expect(error.message).toBe("/api/v1/pods is not a cluster proxy path");
    // The entry point's hook sees the miss first, so it may answer with its own error.
    expect(seen).toEqual([undefined]);
    refusalEvent(error, { target: "/api/v1/pods", ...ALICE, cluster: "" });
  });

  test("no token: 401, audited without a pass but with the cluster the target names", async () => {
    const target = proxied("prod", PODS);
    const error = await refusal(request(target));
    expect(error.code).toBe(401);
    expect(error.reason).toBe("Unauthorized");
    expect(error.message).toBe("Unauthorized: no bearer token; use the kubeconfig kpass generated for your pass");
    refusalEvent(error, { pass: "", user: "", cluster: "prod" });
  });

  test("a forged token: 401", async () => {
    const target = proxied("prod", PODS);
    const error = await refusal(request(target, { headers: { authorization: "Bearer not-a-token" } }));
    expect(error.code).toBe(401);
    expect(error.message).toBe("Unauthorized: the token is not a valid kpass pass token");
    refusalEvent(error, { pass: "", user: "", cluster: "prod" });
  });

  test("an unknown cluster: 404, audited with the pass and the cluster named", async () => {
    const target = proxied("nope", PODS);
    const error = await refusal(request(target, { pass: "alice" }));
    expect(error.code).toBe(404);
    expect(error.reason).toBe("NotFound");
    expect(error.message).toBe('clusters.cluster.kpass.dev "nope" not found');
    refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "nope" });
  });

  test("a cluster the pass does not reach: the same 404 as an unknown one (it does not exist for the pass)", async () => {
    const target = proxied("staging", PODS);
    const error = await refusal(request(target, { pass: "alice" }));
    expect(error.code).toBe(404);
    expect(error.reason).toBe("NotFound");
    expect(error.message).toBe('clusters.cluster.kpass.dev "staging" not found');
    refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "staging" });
  });

  test("a request no rule allows: 403 saying what was asked", async () => {
    const target = proxied("prod", `${PODS}/web`);
    const error = await refusal(request(target, { pass: "alice", method: "DELETE" }));
    expect(error.code).toBe(403);
    expect(error.message).toBe('pods "web" is forbidden: User "alice@example.com" cannot delete resource "pods" in API group "" in the namespace "team-a": the pass "alice" on cluster "prod" does not allow it');
    const event = refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "prod" });
    // Authorization read the request before it refused: the line says what was asked.
    expect(event.attributes).toMatchObject({ verb: "delete", resource: "pods", namespace: "team-a", name: "web" });
  });

  test("the same request in a namespace outside the rule: 403", async () => {
    const target = proxied("prod", "/api/v1/namespaces/team-b/pods");
    const error = await refusal(request(target, { pass: "alice" }));
    expect(error.code).toBe(403);
    expect(error.message).toBe('pods is forbidden: User "alice@example.com" cannot list resource "pods" in API group "" in the namespace "team-b": the pass "alice" on cluster "prod" does not allow it');
    refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "prod" });
  });

  test("an Impersonate-* header Kubernetes does not define: 403", async () => {
    const target = proxied("prod", PODS);
    const error = await refusal(request(target, { pass: "alice", headers: { "impersonate-everything": "yes" } }));
    expect(error.code).toBe(403);
    expect(error.message).toBe("kpass does not forward the impersonation header(s) impersonate-everything");
    refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "prod" });
  });

  test("--as without an impersonate rule: 403", async () => {
    const target = proxied("prod", PODS);
    const error = await refusal(request(target, { pass: "alice", headers: { "impersonate-user": "cluster-admin" } }));
    expect(error.code).toBe(403);
    expect(error.message).toBe('users "cluster-admin" is forbidden: User "alice@example.com" cannot impersonate resource "users" in API group "" at the cluster scope: the pass "alice" on cluster "prod" has no impersonate rule for user "cluster-admin"');
    refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "prod" });
  });
});

describe("entry-point hooks", () => {
  const target = proxied("prod", PODS);

  test("beforeParse runs after authentication, before parsing: its error is thrown as is, audited with the pass", async () => {
    const thrown = new ApiError(400, "BadRequest", "tunnels carry no body");
    const error = await refusal(request(target, { pass: "alice" }), {
      ...REST,
      beforeParse: () => {
        throw thrown;
      },
    });
    expect(error).toBe(thrown);
    refusalEvent(error, { target, ...ALICE, cluster: "prod" });
  });

  test("onTarget gets the parsed target; its error is thrown before authorization", async () => {
    const seen: (ProxyTarget | undefined)[] = [];
    const thrown = new ApiError(400, "BadRequest", "only exec, attach and portforward may upgrade");
    const error = await refusal(request(`${target}?watch=1`, { pass: "alice" }), {
      ...REST,
      onTarget: (t) => {
        seen.push(t);
        throw thrown;
      },
    });
    expect(error).toBe(thrown);
    expect(seen).toEqual([{ cluster: "prod", path: PODS, search: "?watch=1" }]);
    refusalEvent(error, { ...ALICE, cluster: "prod" });
  });

  test("afterPlan runs after authorization: audited with the pass and what it asked", async () => {
    const thrown = new ApiError(403, "Forbidden", "escalation refused");
    let planned: string | undefined;
    const error = await refusal(request(target, { pass: "alice" }), {
      ...REST,
      afterPlan: async (plan, identity) => {
        planned = `${identity.pass}→${plan.cluster.metadata.name}`;
        throw thrown;
      },
    });
    expect(error).toBe(thrown);
    expect(planned).toBe("alice→prod");
    const event = refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "prod" });
    expect(event.attributes).toMatchObject({ verb: "list", apiGroup: "", resource: "pods", subresource: "", namespace: "team-a", name: "" });
  });

  test("a hook that throws something other than an ApiError: a terse 500, audited", async () => {
    const error = await refusal(request(target, { pass: "alice" }), {
      ...REST,
      afterPlan: () => {
        throw new TypeError("boom");
      },
    });
    expect(error.code).toBe(500);
    expect(error.reason).toBe("InternalError");
    expect(error.message).toBe("internal error: boom");
    refusalEvent(error, { pass: "alice", user: "alice@example.com", cluster: "prod" });
  });
});

describe("an admitted request", () => {
  test("is audited only when finished, once, with what it did on the cluster", async () => {
    const admitted = await admission.admit(request(proxied("prod", PODS) + "?limit=5&labelSelector=app%3Dweb", { pass: "alice" }), REST);
    expect(events).toEqual([]);
    expect(admitted.identity.pass).toBe("alice");
    expect(admitted.plan.cluster.metadata.name).toBe("prod");
    expect(admitted.plan.target).toEqual({ cluster: "prod", path: PODS, search: "?limit=5&labelSelector=app%3Dweb" });
    expect(admitted.lease).toBeUndefined();

    admission.finished(admitted, { status: 200, bytesIn: 0, bytesOut: 1234 });
    expect(events).toHaveLength(1);
    const event = events[0]!;
    expect(event).toMatchObject({
      pass: "alice",
      user: "alice@example.com",
      cluster: "prod",
      target: `${PODS}?limit=5&labelSelector=app%3Dweb`,
      status: 200,
      bytesIn: 0,
      bytesOut: 1234,
      sourceIP: SOURCE,
      startedAt: admitted.startedAt,
    });
    expect(event.attributes).toMatchObject({ verb: "list", apiGroup: "", resource: "pods", subresource: "", namespace: "team-a", name: "" });
    expect(event.message).toBeUndefined();
    expect(event.impersonated).toBeUndefined();
  });

  test("finished carries the entry point's outcome, message included", async () => {
    const admitted = await admission.admit(request(proxied("prod", `${PODS}/web`), { pass: "alice" }), REST);
    admission.finished(admitted, { status: 504, bytesIn: 10, bytesOut: 0, message: "the cluster did not answer in time" });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ target: `${PODS}/web`, status: 504, bytesIn: 10, bytesOut: 0, message: "the cluster did not answer in time" });
    expect(events[0]!.attributes).toMatchObject({ verb: "get", name: "web" });
  });

  test("the outgoing headers carry the cluster's credential, never the client's", async () => {
    const clientToken = tokenOf["alice"]!;
    const admitted = await admission.admit(
      request(proxied("prod", PODS), { pass: "alice", headers: { accept: "application/json", "x-remote-user": "system:admin", cookie: "session=1", "user-agent": "kubectl/v1.31" } }),
      REST,
    );
    const headers = admitted.plan.headers;
    expect(headers.get("authorization")).toBe(`Bearer ${CLUSTER_TOKEN}`);
    for (const [, value] of headers) expect(value).not.toContain(clientToken);
    expect(headers.get("accept")).toBe("application/json");
    expect(headers.get("user-agent")).toBe("kubectl/v1.31");
    expect(headers.has("x-remote-user")).toBe(false);
    expect(headers.has("cookie")).toBe(false);
    // kpass meters bodies as sent, so a REST request asks for them uncompressed unless the client chose.
    expect(headers.get("accept-encoding")).toBe("identity");
  });

  test("an upgrade keeps Connection/Upgrade and still swaps the credential", async () => {
    const admitted = await admission.admit(
      request(proxied("prod", `${PODS}/web/exec`) + "?command=ls&stdout=true", {
        pass: "alice",
        upgrade: true,
        headers: { connection: "Upgrade", upgrade: "SPDY/3.1", "x-stream-protocol-version": "v4.channel.k8s.io" },
      }),
      REST,
    );
    const headers = admitted.plan.headers;
    expect(admitted.plan.decision.attributes).toMatchObject({ verb: "create", resource: "pods", subresource: "exec", name: "web", namespace: "team-a" });
    expect(headers.get("connection")).toBe("Upgrade");
    expect(headers.get("upgrade")).toBe("SPDY/3.1");
    expect(headers.get("x-stream-protocol-version")).toBe("v4.channel.k8s.io");
    expect(headers.get("authorization")).toBe(`Bearer ${CLUSTER_TOKEN}`);
    expect(headers.has("accept-encoding")).toBe(false);
    expect(events).toEqual([]);
  });
});

describe("stream leases", () => {
  const watch = () => request(proxied("prod", PODS) + "?watch=true", { pass: "watcher" });

  test("a request that holds a stream gets a lease; one that does not, none", async () => {
    const before = streams.size;
    const listed = await admission.admit(request(proxied("prod", PODS), { pass: "watcher" }), WATCHES);
    expect(listed.lease).toBeUndefined();
    const watched = await admission.admit(watch(), WATCHES);
    try {
      expect(watched.lease).toBeDefined();
      expect(watched.lease!.signal.aborted).toBe(false);
      expect(streams.size).toBe(before + 1);
    } finally {
      watched.lease?.release();
    }
    expect(streams.size).toBe(before);
    expect(events).toEqual([]);
  });

  test("past maxPerPass: 429 with Retry-After, audited; a released lease makes room again", async () => {
    const leases: StreamLease[] = [];
    try {
      for (let i = 0; i < MAX_PER_PASS; i++) leases.push((await admission.admit(watch(), WATCHES)).lease!);
      expect(leases.every((l) => l !== undefined)).toBe(true);
      const error = await refusal(watch(), WATCHES);
      expect(error.code).toBe(429);
      expect(error.reason).toBe("TooManyRequests");
      expect(error.message).toBe(`pass "watcher" already holds ${MAX_PER_PASS} open watches and tunnels (the limit per pass)`);
      expect(error.details?.retryAfterSeconds).toBe(10);
      const event = refusalEvent(error, { pass: "watcher", user: "watcher", cluster: "prod" });
      expect(event.attributes).toMatchObject({ verb: "watch", resource: "pods", namespace: "team-a" });

      leases.pop()!.release();
      const again = await admission.admit(watch(), WATCHES);
      expect(again.lease).toBeDefined();
      leases.push(again.lease!);
    } finally {
      for (const lease of leases) lease.release();
    }
  });

  test("editing the pass aborts the stream it admitted", async () => {
    const admitted = await admission.admit(request(proxied("prod", PODS) + "?watch=true", { pass: "edited" }), WATCHES);
    try {
      expect(admitted.lease!.signal.aborted).toBe(false);
      await passes.update("edited", (p) => ({ ...p, spec: { ...p.spec, groups: ["narrowed"] } }), { bumpGeneration: () => true });
      expect(admitted.lease!.signal.aborted).toBe(true);
      expect((admitted.lease!.signal.reason as ApiError).code).toBe(401);
    } finally {
      admitted.lease?.release();
    }
  });
});
