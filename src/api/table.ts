import type { StoredObject } from "../core/object.ts";
import type { KindDefinition } from "./kind.ts";

/** Whether the client asked for a server-side meta.k8s.io Table (what `kubectl get` prints). */
export function wantsTable(req: Request): boolean {
  const accept = req.headers.get("accept") ?? "";
  return accept.split(",").some((part) => {
    const params = part.split(";").map((p) => p.trim());
    return params.includes("as=Table") && params.includes("g=meta.k8s.io") && (params.includes("v=v1") || params.includes("v=v1beta1"));
  });
}

function tableApiVersion(req: Request): string {
  const accept = req.headers.get("accept") ?? "";
  const v1 = /as=Table;\s*v=v1(?!beta)|v=v1;\s*g=meta\.k8s\.io/.test(accept) || !accept.includes("v=v1beta1");
  return v1 ? "meta.k8s.io/v1" : "meta.k8s.io/v1beta1";
}

function rowObject(object: StoredObject, includeObject: string): unknown {
  if (includeObject === "None") return undefined;
  if (includeObject === "Object") return object;
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: object.metadata };
}

export function toTable<T extends StoredObject>(
  req: Request,
  kind: KindDefinition<T>,
  objects: T[],
  listMeta: { resourceVersion: string; continue?: string },
): Record<string, unknown> {
  const includeObject = new URL(req.url).searchParams.get("includeObject") ?? "Metadata";
  const now = Date.now();
  return {
    kind: "Table",
    apiVersion: tableApiVersion(req),
    metadata: listMeta,
    columnDefinitions: kind.columns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? "", description: c.description, priority: c.priority ?? 0 })),
    rows: objects.map((object) => ({ cells: kind.row(object, now), object: rowObject(object, includeObject) })),
  };
}
