import { writeFileAtomic } from "../store/atomic-file.ts";
import { readFile } from "node:fs/promises";
import { parse, parseDocument } from "yaml";
import { KPASS_CONTEXT } from "../auth/kubeconfig.ts";
import { API_VERSION } from "../core/api-group.ts";
import { ApiError } from "../core/status.ts";
import type { Pass } from "../core/pass.ts";
import type { ObjectStore } from "../store/object-store.ts";

/** The current-context of a kubeconfig file, or undefined when it is missing, unreadable or not a kubeconfig. */
export async function readCurrentContext(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const config = parse(text) as { "current-context"?: unknown } | null;
    const current = config?.["current-context"];
    return typeof current === "string" && current !== "" ? current : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The generated kubeconfig `generated` with its current-context set to `previous` when that names one
 * of its contexts (a user's `kubectl config use-context prod` survives restarts), else to `kpass`.
 */
export function keepCurrentContext(generated: string, previous: string | undefined): string {
  const doc = parseDocument(generated);
  const contexts = (doc.toJS() as { contexts?: { name?: unknown }[] }).contexts ?? [];
  const names = new Set(contexts.map((c) => c.name));
  const current = previous !== undefined && names.has(previous) ? previous : KPASS_CONTEXT;
  if (doc.get("current-context") === current) return generated;
  doc.set("current-context", current);
  return doc.toString();
}

/**
 * Rewrites the admin kubeconfig at `path` from the freshly generated `generated` (whose
 * current-context is `kpass`), keeping the file's existing current-context when it still names a
 * context, and replacing the file atomically.
 */
export async function writeAdminKubeconfig(path: string, generated: string): Promise<void> {
  await writeFileAtomic(path, keepCurrentContext(generated, await readCurrentContext(path)));
}

const ADMIN_PASS = "admin";

/**
 * The admin pass, created on first start (kpass must be manageable out of the box). Replicas
 * starting together on one etcd race to create it: the losers take the winner's.
 */
export async function ensureAdminPass(passes: ObjectStore<Pass>): Promise<Pass> {
  const existing = passes.get(ADMIN_PASS);
  if (existing) return existing;
  try {
    return await passes.create({
      apiVersion: API_VERSION,
      kind: "Pass",
      metadata: { name: ADMIN_PASS, annotations: { "kpass.dev/description": "created on first start" } },
      spec: { user: "kpass-admin", admin: true, roles: ["cluster-admin"], clusters: { names: ["*"] } },
    } as unknown as Pass);
  } catch (error) {
    const winner = error instanceof ApiError && error.reason === "AlreadyExists" ? await passes.fetch(ADMIN_PASS) : undefined;
    if (!winner) throw error;
    return winner;
  }
}
