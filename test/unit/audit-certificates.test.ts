/** The audit log's two certificate fields: the serial a request authenticated with, and an issuance. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog, MAX_FIELD_BYTES, TRUNCATED_MARKER } from "../../src/audit/audit-log.ts";

const dir = mkdtempSync(join(tmpdir(), "kpass-audit-certs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("clientCertificateSerial and issuedCertificate are written as given, bounded, and absent for token requests", () => {
  const path = join(dir, "audit.log");
  const log = new AuditLog({ path, stdout: false, maxBytes: 1 << 20 });
  const base = { pass: "alice", user: "alice", cluster: "prod", target: "/api/v1/pods", status: 200, bytesIn: 0, bytesOut: 10 };
  log.record({ ...base, clientCertificateSerial: "0D6720A88BE76BF9717716A145F75058" });
  log.record(base);
  log.record({ ...base, cluster: "", target: "/apis/cluster.kpass.dev/v1beta1/passes/alice/certificate", status: 201, issuedCertificate: { pass: "alice", serial: "5FB06F12", notAfter: "2026-12-04T12:00:00Z" } });
  log.record({ ...base, clientCertificateSerial: "A".repeat(5000) });
  log.close();
  const [withCert, withToken, issued, long] = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(withCert.clientCertificateSerial).toBe("0D6720A88BE76BF9717716A145F75058");
  expect("clientCertificateSerial" in withToken).toBe(false);
  expect("issuedCertificate" in withToken).toBe(false);
  expect(issued.issuedCertificate).toEqual({ pass: "alice", serial: "5FB06F12", notAfter: "2026-12-04T12:00:00Z" });
  expect(long.clientCertificateSerial.startsWith("A".repeat(MAX_FIELD_BYTES) + TRUNCATED_MARKER)).toBe(true);
});
