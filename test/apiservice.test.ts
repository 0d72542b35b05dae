import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { createCertificateAuthority } from "../src/edge/pki.ts";

const ROOT = join(import.meta.dir, "..");

async function kpass(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

test("kpass apiservice prints the APIService with kpass's serving CA, its Service, and the host RBAC kpass needs", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kpass-apiservice-"));
  try {
    const ca = await createCertificateAuthority("kpass-ca");
    writeFileSync(join(dir, "ca.crt"), ca.certPem);
    const result = await kpass(["apiservice", "--data", dir, "--service-namespace", "platform", "--service-name", "gateway"]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).not.toContain("*a1");
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const docs = parseAllDocuments(result.stdout).map((d) => d.toJSON()) as any[];
    expect(docs.map((d) => d.kind)).toEqual(["APIService", "Service", "ServiceAccount", "RoleBinding", "ClusterRoleBinding"]);
    const [apiService, service, , roleBinding, clusterRoleBinding] = docs;
    expect(apiService.metadata.name).toBe("v1beta1.cluster.kpass.dev");
    expect(apiService.spec).toMatchObject({ group: "cluster.kpass.dev", version: "v1beta1", service: { namespace: "platform", name: "gateway", port: 443 } });
    expect(Buffer.from(apiService.spec.caBundle, "base64").toString("utf8")).toBe(ca.certPem);
    expect(apiService.spec.insecureSkipTLSVerify).toBeUndefined();
    expect(service.metadata).toMatchObject({ namespace: "platform", name: "gateway" });
    expect(service.spec.ports[0]).toMatchObject({ port: 443, targetPort: 8443 });
    expect(roleBinding.metadata.namespace).toBe("kube-system");
    expect(roleBinding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "extension-apiserver-authentication-reader" });
    expect(clusterRoleBinding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:auth-delegator" });
    for (const binding of [roleBinding, clusterRoleBinding]) expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "gateway", namespace: "platform" }]);

    const asUser = await kpass(["apiservice", "--data", dir, "--user", "kpass-host"]);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const userDocs = parseAllDocuments(asUser.stdout).map((d) => d.toJSON()) as any[];
    expect(userDocs.map((d) => d.kind)).toEqual(["APIService", "Service", "RoleBinding", "ClusterRoleBinding"]);
    expect(userDocs[3].subjects).toEqual([{ kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "kpass-host" }]);

    const missing = await kpass(["apiservice", "--data", join(dir, "nowhere")]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain("cannot read kpass's serving CA");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
