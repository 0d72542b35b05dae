/**
 * The Authenticator: bearer token → Pass → Identity. Real tokens, a real key on disk and a real
 * ObjectStore, so that revocation (delete, re-create, expiry) is exercised the way it happens in
 * production: by changing the store, never by touching the token.
 */
import { FileSecrets } from "../../src/store/secrets.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { Authenticator } from "../../src/auth/authenticate.ts";
import type { Identity } from "../../src/auth/identity.ts";
import { rulesAllow } from "../../src/auth/policy-rules.ts";
import { requestAttributes } from "../../src/auth/request-attributes.ts";
import { roleRules } from "../../src/auth/roles.ts";
import { loadOrCreateSigningKey, TOKEN_ALGORITHM, type SigningKey } from "../../src/auth/signing-key.ts";
import { TOKEN_ISSUER, TokenService } from "../../src/auth/tokens.ts";
import { API_VERSION } from "../../src/core/api-group.ts";
import type { Pass, PassSpec } from "../../src/core/pass.ts";
import { ApiError } from "../../src/core/status.ts";
import { MemoryPersistence } from "../harness/memory-persistence.ts";
import { ObjectStore } from "../../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../../src/store/local-backend.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-authenticate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let key: SigningKey;
let otherKey: SigningKey;
let tokens: TokenService;
let passes: ObjectStore<Pass>;
let authenticator: Authenticator;

beforeAll(async () => {
  key = await loadOrCreateSigningKey(new FileSecrets(dir), "signing-key.json");
  otherKey = await loadOrCreateSigningKey(new FileSecrets(dir), "other-signing-key.json");
  tokens = new TokenService(key);
  passes = new ObjectStore<Pass>("passes", new LocalBackend("passes", new RevisionClock(), new MemoryPersistence()));
  authenticator = new Authenticator(tokens, passes);
});

function passObject(name: string, spec: PassSpec): Pass {
  return { apiVersion: API_VERSION, kind: "Pass", metadata: { name }, spec } as Pass;
}

/** A stored pass and a token minted for it, as `kpass` issues them. */
async function issue(name: string, spec: PassSpec): Promise<{ pass: Pass; token: string }> {
  const pass = await passes.create(passObject(name, spec));
  return { pass, token: await tokens.mint(pass.metadata.name, pass.metadata.uid) };
}

const bearer = (token: string) => new Headers({ authorization: `Bearer ${token}` });

async function refusal(headers: Headers): Promise<ApiError> {
  try {
    await authenticator.authenticate(headers);
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected authenticate to refuse");
}

function expectUnauthorized(error: ApiError, message: string): void {
  expect(error.code).toBe(401);
  expect(error.reason).toBe("Unauthorized");
  expect(error.message).toBe(message);
}

function cluster(name: string, labels?: Record<string, string>) {
  return { metadata: { name, labels } };
}

describe("refusals", () => {
  test("no Authorization header: 401 pointing at the generated kubeconfig", async () => {
    expectUnauthorized(await refusal(new Headers()), "Unauthorized: no bearer token; use the kubeconfig kpass generated for your pass");
  });

  test("an Authorization header that is not a bearer token: 401", async () => {
    const { token } = await issue("basic-user", { user: "basic-user" });
    for (const value of ["Basic YWxpY2U6c2VjcmV0", `Token ${token}`, "Bearer", `Bearer ${token} extra`]) {
      expectUnauthorized(await refusal(new Headers({ authorization: value })), "Unauthorized: the Authorization header must be a bearer token");
    }
  });

  test("garbage after Bearer: 401, not a kpass token", async () => {
    for (const token of ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."]) {
      expectUnauthorized(await refusal(bearer(token)), "Unauthorized: the token is not a valid kpass pass token");
    }
  });

  test("a well-formed token signed by another key: 401, not a kpass token", async () => {
    const { pass } = await issue("forged", { user: "forged" });
    // Same claims and kid as a genuine token; only the signature is wrong.
    const forged = await new TokenService({ ...otherKey, kid: key.kid }).mint(pass.metadata.name, pass.metadata.uid);
    expectUnauthorized(await refusal(bearer(forged)), "Unauthorized: the token is not a valid kpass pass token");
  });

  test("a token lacking the pass uid (jti): 401, not a kpass token", async () => {
    const { pass } = await issue("no-jti", { user: "no-jti" });
    const token = await new SignJWT({}).setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: key.kid }).setIssuer(TOKEN_ISSUER).setSubject(pass.metadata.name).sign(key.privateKey);
    expectUnauthorized(await refusal(bearer(token)), "Unauthorized: the token is not a valid kpass pass token");
  });

  test("a token whose own exp has passed: 401 saying the token expired", async () => {
    // kpass mints tokens without exp, but one carrying it must still be honoured.
    const { pass } = await issue("token-exp", { user: "token-exp" });
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: key.kid })
      .setIssuer(TOKEN_ISSUER)
      .setSubject(pass.metadata.name)
      .setJti(pass.metadata.uid)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(key.privateKey);
    expectUnauthorized(await refusal(bearer(token)), "Unauthorized: the pass token has expired");
  });

  test("the token of a deleted pass: 401 revoked", async () => {
    const { token } = await issue("deleted", { user: "deleted" });
    await authenticator.authenticate(bearer(token));
    await passes.delete("deleted");
    expectUnauthorized(await refusal(bearer(token)), 'Unauthorized: pass "deleted" has been revoked');
  });

  test("a pass deleted and re-created under the same name: the old token is revoked, the new one works", async () => {
    const first = await issue("recreated", { user: "recreated" });
    await authenticator.authenticate(bearer(first.token));
    await passes.delete("recreated");
    const second = await issue("recreated", { user: "recreated" });
    expect(second.pass.metadata.uid).not.toBe(first.pass.metadata.uid);
    expectUnauthorized(await refusal(bearer(first.token)), 'Unauthorized: pass "recreated" has been revoked');
    expect((await authenticator.authenticate(bearer(second.token))).passUid).toBe(second.pass.metadata.uid);
  });

  test("a pass whose spec.expiresAt has passed: 401 naming when it expired", async () => {
    const expiresAt = "2020-01-01T00:00:00Z";
    const { token } = await issue("expired", { user: "expired", expiresAt });
    expectUnauthorized(await refusal(bearer(token)), `Unauthorized: pass "expired" expired at ${expiresAt}`);
  });

  test("expiry is the pass's, not the token's: extending expiresAt revives an issued token", async () => {
    const { token } = await issue("extended", { user: "extended", expiresAt: "2020-01-01T00:00:00Z" });
    expect((await refusal(bearer(token))).message).toContain("expired at");
    await passes.update("extended", (p) => ({ ...p, spec: { ...p.spec, expiresAt: "2999-01-01T00:00:00Z" } }));
    expect((await authenticator.authenticate(bearer(token))).pass).toBe("extended");
  });
});

describe("the identity of a good token", () => {
  test("carries pass, uid, user, groups, admin and the pass's rules", async () => {
    const { pass, token } = await issue("alice-laptop", { user: "alice@example.com", groups: ["devs", "oncall"], admin: true, clusters: { names: ["prod"] } });
    const identity = await authenticator.authenticate(bearer(token));
    expect(identity.pass).toBe("alice-laptop");
    expect(identity.passUid).toBe(pass.metadata.uid);
    expect(identity.user).toBe("alice@example.com");
    expect(identity.groups).toEqual(["devs", "oncall"]);
    expect(identity.isAdmin).toBe(true);
    expect(identity.rules).toEqual([]);
  });

  test("defaults: no groups, not admin, no rules, reaches no cluster, no stream leases without OpenStreams", async () => {
    const { token } = await issue("bare", { user: "bare" });
    const identity = await authenticator.authenticate(bearer(token));
    expect(identity.groups).toEqual([]);
    expect(identity.isAdmin).toBe(false);
    expect(identity.rules).toEqual([]);
    expect(identity.reachesCluster(cluster("prod", { env: "prod" }))).toBe(false);
    expect(identity.openStream).toBeUndefined();
  });

  test("the case of the Bearer scheme does not matter", async () => {
    const { token } = await issue("lowercase-scheme", { user: "lc" });
    expect((await authenticator.authenticate(new Headers({ authorization: `bearer ${token}` }))).pass).toBe("lowercase-scheme");
  });

  test("roles are expanded and scoped to spec.namespaces; explicit rules keep their own scope", async () => {
    const explicit = { verbs: ["get"], apiGroups: [""], resources: ["nodes"] };
    const { token } = await issue("viewer", { user: "viewer", roles: ["view"], namespaces: ["team-a"], rules: [explicit] });
    const identity = await authenticator.authenticate(bearer(token));
    const view = roleRules("view")!;
    expect(identity.rules).toEqual([...view.map((r) => ({ ...r, namespaces: ["team-a"] })), explicit]);

    const allows = (method: string, path: string) => rulesAllow(identity.rules, requestAttributes(method, path, new URLSearchParams()));
    expect(allows("GET", "/api/v1/namespaces/team-a/pods")).toBe(true);
    expect(allows("GET", "/api/v1/namespaces/team-b/pods")).toBe(false);
    expect(allows("GET", "/api/v1/pods")).toBe(false);
    // The explicit rule is not narrowed to team-a, so a cluster-scoped read still passes.
    expect(allows("GET", "/api/v1/nodes/node-1")).toBe(true);
  });

  test("roles without spec.namespaces apply everywhere", async () => {
    const { token } = await issue("cluster-viewer", { user: "cv", roles: ["view"] });
    const identity = await authenticator.authenticate(bearer(token));
    expect(identity.rules).toEqual(roleRules("view")!);
    expect(rulesAllow(identity.rules, requestAttributes("GET", "/api/v1/pods", new URLSearchParams()))).toBe(true);
  });

  test("several roles are concatenated in order", async () => {
    const { token } = await issue("two-roles", { user: "tr", roles: ["view", "cluster-admin"], namespaces: ["ops"] });
    const identity = await authenticator.authenticate(bearer(token));
    expect(identity.rules).toEqual([...roleRules("view")!, ...roleRules("cluster-admin")!].map((r) => ({ ...r, namespaces: ["ops"] })));
  });
});

describe("reachesCluster", () => {
  async function reach(name: string, clusters: PassSpec["clusters"]): Promise<Identity> {
    const { token } = await issue(name, { user: name, clusters });
    return authenticator.authenticate(bearer(token));
  }

  test("by name", async () => {
    const identity = await reach("by-name", { names: ["prod", "staging"] });
    expect(identity.reachesCluster(cluster("prod"))).toBe(true);
    expect(identity.reachesCluster(cluster("staging"))).toBe(true);
    expect(identity.reachesCluster(cluster("dev"))).toBe(false);
    // Names are exact, not prefixes.
    expect(identity.reachesCluster(cluster("prod-2"))).toBe(false);
  });

  test('"*" reaches every cluster', async () => {
    const identity = await reach("by-star", { names: ["*"] });
    for (const name of ["prod", "dev", "anything"]) expect(identity.reachesCluster(cluster(name))).toBe(true);
  });

  test("by label selector (matchLabels and matchExpressions)", async () => {
    const identity = await reach("by-selector", { selector: { matchLabels: { env: "prod" }, matchExpressions: [{ key: "region", operator: "In", values: ["eu", "us"] }] } });
    expect(identity.reachesCluster(cluster("a", { env: "prod", region: "eu" }))).toBe(true);
    expect(identity.reachesCluster(cluster("b", { env: "prod", region: "ap" }))).toBe(false);
    expect(identity.reachesCluster(cluster("c", { env: "dev", region: "eu" }))).toBe(false);
    expect(identity.reachesCluster(cluster("d"))).toBe(false);
  });

  test("names and selector together: either one suffices", async () => {
    const identity = await reach("by-both", { names: ["legacy"], selector: { matchLabels: { env: "prod" } } });
    expect(identity.reachesCluster(cluster("legacy"))).toBe(true);
    expect(identity.reachesCluster(cluster("new", { env: "prod" }))).toBe(true);
    expect(identity.reachesCluster(cluster("other", { env: "dev" }))).toBe(false);
  });
});

describe("identity cache", () => {
  test("the same object is returned while the pass's resourceVersion is unchanged", async () => {
    const { token } = await issue("cached", { user: "cached", roles: ["view"] });
    const first = await authenticator.authenticate(bearer(token));
    const second = await authenticator.authenticate(bearer(token));
    expect(second).toBe(first);
    expect(authenticator.identityFor(passes.get("cached")!)).toBe(first);
  });

  test("editing the pass changes the identity on the next request", async () => {
    const { token } = await issue("edited", { user: "edited", groups: ["a"], clusters: { names: ["prod"] }, roles: ["view"] });
    const before = await authenticator.authenticate(bearer(token));
    await passes.update("edited", (p) => ({ ...p, spec: { ...p.spec, groups: ["b"], clusters: { names: ["staging"] }, roles: [], admin: true } }));
    const after = await authenticator.authenticate(bearer(token));
    expect(after).not.toBe(before);
    expect(after.groups).toEqual(["b"]);
    expect(after.isAdmin).toBe(true);
    expect(after.rules).toEqual([]);
    expect(after.reachesCluster(cluster("prod"))).toBe(false);
    expect(after.reachesCluster(cluster("staging"))).toBe(true);
    // The identity handed out earlier is not mutated under its holder.
    expect(before.groups).toEqual(["a"]);
    expect(before.reachesCluster(cluster("prod"))).toBe(true);
  });

  test("a re-created pass of the same name never gets the old pass's cached identity", async () => {
    const first = await issue("recached", { user: "old-user", admin: true });
    const old = await authenticator.authenticate(bearer(first.token));
    await passes.delete("recached");
    const second = await issue("recached", { user: "new-user" });
    const fresh = await authenticator.authenticate(bearer(second.token));
    expect(fresh).not.toBe(old);
    expect(fresh.user).toBe("new-user");
    expect(fresh.isAdmin).toBe(false);
    expect(fresh.passUid).toBe(second.pass.metadata.uid);
  });
});
