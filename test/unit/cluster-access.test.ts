import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterKind } from "../../src/api/kinds/cluster.ts";
import type { ClusterTransport, ClusterTransports } from "../../src/proxy/cluster-transport.ts";
import { HealthProber } from "../../src/proxy/health-prober.ts";
import { FilePersistence } from "../../src/store/file-persistence.ts";
import { ObjectStore } from "../../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../../src/store/local-backend.ts";
import type { Cluster } from "../../src/core/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-cluster-access-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cluster(name: string, proxyURL?: string): Cluster {
  return {
    apiVersion: "cluster.kpass.dev/v1beta1",
    kind: "Cluster",
    metadata: { name },
    spec: { access: { endpoint: "https://prod.example:6443", proxyURL, credential: { type: "ServiceAccountToken", serviceAccountToken: "cluster-token" } } },
  } as Cluster;
}

describe("spec.access.proxyURL", () => {
  test("with user information is invalid: credentials belong in the credential block", () => {
    for (const url of ["http://user:pass@proxy.example:3128", "http://user@proxy.example:3128", "https://:secret@proxy.example", "http://@proxy.example"]) {
      const problems = clusterKind.validate(cluster("c", url));
      expect(problems).toContainEqual({ field: "spec.access.proxyURL", message: expect.stringContaining("credentials belong in spec.access.credential") });
      expect(JSON.stringify(problems)).not.toContain("pass@");
    }
  });

  test("without user information is valid", () => {
    expect(clusterKind.validate(cluster("c", "http://proxy.example:3128"))).toEqual([]);
    expect(clusterKind.validate(cluster("c", "http://proxy.example:3128/path@x"))).toEqual([]);
  });
});

describe("health prober", () => {
  test("never follows a redirect and reports a 3xx as not ready", async () => {
    const clusters = new ObjectStore<Cluster>("clusters", new LocalBackend("clusters", new RevisionClock(), new FilePersistence(join(dir, "objects"))));
    await clusters.create(cluster("prod"));
    const seen: RequestInit[] = [];
    const transport = {
      cluster: "prod",
      endpoint: new URL("https://prod.example:6443"),
      tls: {},
      bearerToken: "cluster-token",
      fetch: async (_input: string | URL | Request, init?: RequestInit) => {
        seen.push(init ?? {});
        return new Response("moved", { status: 302, headers: { location: "https://evil.example/steal?token=x" } });
      },
      close: () => {},
    } as unknown as ClusterTransport;
    const transports = { for: () => transport, forget: () => {} } as unknown as ClusterTransports;
    const prober = new HealthProber(clusters, transports, 0, 5000);
    await prober.probe("prod");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.redirect).toBe("manual");
    const ready = clusters.get("prod")!.status!.conditions!.find((c) => c.type === "Ready")!;
    expect(ready.status).toBe("False");
    expect(ready.reason).toBe("HTTP302");
    expect(ready.message).toContain("does not follow redirects");
    expect(ready.message).not.toContain("token=x");
  });
});
