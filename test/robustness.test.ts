import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { auditLines, clusterManifest, removeDataDir, startKpass, type ApiResponse, type KpassProcess } from "./harness/kpass.ts";
import { RawConnection, rawRequest } from "./harness/raw-http.ts";

const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";
let fixture: TestCluster;
let kpass: KpassProcess;

beforeAll(async () => {
  fixture = await startTestCluster({ credential: { type: "token", token: "robust-token" } });
  kpass = await startKpass({ args: ["--audit", "file"] });
  expect((await kpass.api("POST", CLUSTERS, clusterManifest("c1", fixture, { token: "robust-token" }))).status).toBe(201);
});

afterAll(async () => {
  await kpass?.stop();
  await fixture?.stop();
  if (kpass) removeDataDir(kpass.dataDir);
});

async function expectStatus(response: ApiResponse, code: number, reason?: string): Promise<{ message: string }> {
  expect(response.status).toBe(code);
  const body = await response.json();
  expect(body).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code });
  if (reason) expect(body.reason).toBe(reason);
  return body;
}

const request = (method: string, path: string, extra = "", body = "") =>
  `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${kpass.adminToken}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe("authentication", () => {
  test("no token, a garbage token and a token signed by another key are 401 Status", async () => {
    await expectStatus(await kpass.api("GET", CLUSTERS, undefined, { token: "" }), 401, "Unauthorized");
    await expectStatus(await kpass.api("GET", CLUSTERS, undefined, { token: "not-a-jwt" }), 401, "Unauthorized");
    const [h, p] = kpass.adminToken.split(".");
    await expectStatus(await kpass.api("GET", CLUSTERS, undefined, { token: `${h}.${p}.AAAA` }), 401, "Unauthorized");
    await expectStatus(await kpass.api("GET", `${CLUSTERS}/c1/proxy/api/v1/pods`, undefined, { token: "nope" }), 401);
  });

  test("health and version need no token", async () => {
    expect(await (await kpass.api("GET", "/healthz", undefined, { token: "" })).text()).toBe("ok");
    expect((await (await kpass.api("GET", "/version", undefined, { token: "" })).json()).gitVersion).toContain("kpass");
  });
});

describe("bad bodies never crash kpass", () => {
  test("malformed JSON and YAML are 400", async () => {
    await expectStatus(await kpass.api("POST", CLUSTERS, "{not json"), 400, "BadRequest");
    await expectStatus(await kpass.api("POST", CLUSTERS, "a: [b", { headers: { "content-type": "application/yaml" } }), 400, "BadRequest");
    await expectStatus(await kpass.api("POST", CLUSTERS, "[1,2,3]"), 400, "BadRequest");
    await expectStatus(await kpass.api("POST", CLUSTERS, "null"), 400, "BadRequest");
    await expectStatus(await kpass.api("PATCH", `${CLUSTERS}/c1`, "{", { headers: { "content-type": "application/merge-patch+json" } }), 400);
  });

  test("wrong types and invalid PEM are 422 naming the field", async () => {
    const manifest = clusterManifest("typed", fixture, { token: "x" }) as { spec: { access: Record<string, unknown> } };
    manifest.spec.access.insecure = "yes";
    const typed = await expectStatus(await kpass.api("POST", CLUSTERS, manifest), 422, "Invalid");
    expect(typed.message).toContain("spec.access.insecure");
    const pem = clusterManifest("pem", fixture, { token: "x" }) as { spec: { access: Record<string, unknown> } };
    pem.spec.access.caBundle = Buffer.from("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").toString("base64");
    expect((await expectStatus(await kpass.api("POST", CLUSTERS, pem), 422)).message).toContain("spec.access.caBundle");
    const kind = clusterManifest("kindless", fixture, { token: "x" }) as Record<string, unknown>;
    kind.kind = "Pod";
    await expectStatus(await kpass.api("POST", CLUSTERS, kind), 400);
  });

  test("a body over the 3 MiB limit is 413", async () => {
    const huge = JSON.stringify({ apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name: "huge", annotations: { blob: "x".repeat(4 * 1024 * 1024) } } });
    await expectStatus(await kpass.api("POST", CLUSTERS, huge), 413, "RequestEntityTooLarge");
  });

  test("names with a slash or capitals are refused, never written as paths", async () => {
    const slashed = clusterManifest("a/b", fixture, { token: "x" });
    expect((await expectStatus(await kpass.api("POST", CLUSTERS, slashed), 422)).message).toContain("metadata.name");
    const upper = clusterManifest("../../etc", fixture, { token: "x" });
    await expectStatus(await kpass.api("POST", CLUSTERS, upper), 422);
    await expectStatus(await kpass.api("GET", `${CLUSTERS}/a%2Fb`), 404);
  });
});

describe("proxy paths cannot climb out of the cluster", () => {
  // Dot segments are resolved before routing (RFC 3986, as Go's net/http does for kube-apiserver),
  // so a path either stays inside /clusters/{name}/proxy or lands on kpass's own API, where it is
  // authenticated and authorized like any other request. The cluster never sees a dot segment.
  for (const path of ["/api/v1/../../../clusters", "/api/v1/%2e%2e/%2e%2e/x", "/api/%2E%2e/v1", "/api/./v1/pods", "/api/v1/pods%00"]) {
    test(`${path} is answered with a Status and no dot segment reaches the cluster`, async () => {
      const before = fixture.requests.length;
      const response = await rawRequest(kpass.url, kpass.caPem, request("GET", `${CLUSTERS}/c1/proxy${path}`));
      expect(response.status).toBeGreaterThanOrEqual(200);
      if (response.status >= 400) expect(JSON.parse(response.body)).toMatchObject({ kind: "Status", code: response.status });
      const seen = fixture.requests.slice(before).map((r) => r.path);
      expect(seen.some((p) => /(^|\/)(\.|%2e){1,2}(\/|$)/i.test(p) || p.includes("%00"))).toBe(false);
    });
  }

  test("a path that climbs from one cluster into another is a 404, never resolved", async () => {
    expect((await kpass.api("POST", CLUSTERS, clusterManifest("c2", fixture, { token: "robust-token" }))).status).toBe(201);
    const pass = await kpass.api("POST", "/apis/cluster.kpass.dev/v1beta1/passes", { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Pass", metadata: { name: "only-c1" }, spec: { user: "eve", roles: ["view"], clusters: { names: ["c1"] } } });
    const token = (await pass.json()).status.token as string;
    const before = fixture.requests.length;
    const climbed = await rawRequest(kpass.url, kpass.caPem, request("GET", `${CLUSTERS}/c1/proxy/../../c2/proxy/api/v1/namespaces/default/pods`).replace(kpass.adminToken, token));
    expect(climbed.status).toBe(404);
    expect(JSON.parse(climbed.body)).toMatchObject({ kind: "Status", code: 404, reason: "NotFound" });
    expect(fixture.requests.length).toBe(before);
  });

  test("exec/attach/port-forward upgrades with dot segments are refused outright", async () => {
    const response = await rawRequest(kpass.url, kpass.caPem, request("GET", `${CLUSTERS}/c1/proxy/api/v1/namespaces/default/pods/web-0/%2e%2e/web-1/exec?command=id`, "Connection: Upgrade\r\nUpgrade: websocket\r\n"));
    expect(response.status).toBe(404);
    expect(JSON.parse(response.body)).toMatchObject({ kind: "Status", code: 404, reason: "NotFound" });
  });

  test("an encoded slash in the cluster name is refused", async () => {
    const response = await rawRequest(kpass.url, kpass.caPem, request("GET", `${CLUSTERS}/c1%2F..%2Fx/proxy/api`));
    expect([400, 404]).toContain(response.status);
  });
});

describe("the edge", () => {
  test("garbage instead of HTTP gets a 400 and the connection is closed", async () => {
    const connection = await RawConnection.open(kpass.url, kpass.caPem);
    connection.send("\x16\x03\x01garbage\r\n\r\n");
    const text = await connection.read((t) => t.includes("\r\n\r\n"));
    expect(text).toStartWith("HTTP/1.1 400");
    await connection.read(() => false, 2000);
    expect(connection.closed).toBe(true);
  });

  test("a request head over 64 KiB gets 431", async () => {
    const connection = await RawConnection.open(kpass.url, kpass.caPem);
    connection.send(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70 * 1024)}`);
    const text = await connection.read((t) => t.includes("\r\n\r\n"));
    expect(text).toStartWith("HTTP/1.1 431");
    connection.close();
  });

  test("an upgrade on a reused keep-alive connection is framed and served like a first request", async () => {
    const connection = await RawConnection.open(kpass.url, kpass.caPem);
    connection.send(request("GET", "/healthz"));
    const first = await connection.readResponse();
    expect(first.status).toBe(200);
    connection.send(request("POST", `${CLUSTERS}/c1/proxy/api/v1/namespaces/default/pods/web-0/exec?command=true`, "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"));
    const before = fixture.requests.length;
    const second = await connection.read((t) => t.includes("\r\n\r\n"));
    // The cluster's own answer (this fixture does not speak SPDY) is relayed, then the connection closes.
    expect(second).toStartWith("HTTP/1.1 400");
    expect(fixture.requests.slice(before - 1).some((r) => r.path.endsWith("/exec"))).toBe(true);
    await connection.read(() => false, 2000);
    expect(connection.closed).toBe(true);
    connection.close();
  });

  test("an upgrade outside a cluster proxy path is refused with a 400 Status", async () => {
    const response = await rawRequest(kpass.url, kpass.caPem, request("GET", "/api/v1/namespaces/default/pods/web-0/exec", "Connection: Upgrade\r\nUpgrade: websocket\r\n"));
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body).kind).toBe("Status");
  });

  test("kpass is still healthy after all of the above", async () => {
    expect((await kpass.api("GET", "/healthz")).status).toBe(200);
    expect((await kpass.api("GET", `${CLUSTERS}/c1/proxy/api/v1/namespaces/default/pods/web-0`)).status).toBe(200);
  });
});

describe("secrets stay secret", () => {
  test("neither the audit log nor kpass's output contains a token or the cluster credential", async () => {
    const lines = await auditLines(kpass, (all) => all.some((l) => l.cluster === "c1" && l.status === 200));
    const audit = readFileSync(join(kpass.dataDir, "audit.log"), "utf8");
    expect(lines.some((l) => l.cluster === "c1" && l.path.startsWith("/api/v1/namespaces/default/pods/web-0") && l.status === 200)).toBe(true);
    for (const text of [audit, kpass.stderr()]) {
      expect(text).not.toContain("robust-token");
      expect(text).not.toContain(kpass.adminToken);
    }
  });
});
