/** Host users (aggregated mode) get the same bound on open streams per person as a pass has. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Identity } from "../../src/auth/identity.ts";
import { OpenStreams } from "../../src/auth/open-streams.ts";
import type { Pass } from "../../src/core/pass.ts";
import { ApiError } from "../../src/core/status.ts";
import { FilePersistence } from "../../src/store/file-persistence.ts";
import { ObjectStore } from "../../src/store/object-store.ts";
import { LocalBackend, RevisionClock } from "../../src/store/local-backend.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-open-streams-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function hostUser(user: string): Identity {
  return { pass: "", passUid: "", user, groups: [], isAdmin: false, rules: [], reachesCluster: () => false };
}

test("a host user past the bound gets 429 with Retry-After; others are not affected; a release makes room", () => {
  const streams = new OpenStreams(new ObjectStore<Pass>("passes", new LocalBackend("passes", new RevisionClock(), new FilePersistence(dir))), { maxPerPass: 2 });
  try {
    const alice = hostUser("alice");
    const first = streams.leaseHost(alice);
    streams.leaseHost(alice, "tunnel");
    let refused: unknown;
    try {
      streams.leaseHost(alice);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).code).toBe(429);
    expect((refused as ApiError).details?.retryAfterSeconds).toBe(10);
    expect(() => streams.leaseHost(hostUser("bob"))).not.toThrow();
    first.release();
    expect(() => streams.leaseHost(alice)).not.toThrow();
    // Shutdown ends them like any other stream.
    expect(streams.endAll("stream", "shutting down")).toBe(2);
    expect(streams.endAll("tunnel", "shutting down")).toBe(1);
  } finally {
    streams.stop();
  }
});
