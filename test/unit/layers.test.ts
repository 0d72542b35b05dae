/**
 * The layout of src/ is the architecture: each folder is a layer, and imports run one way. This
 * reads every import in src/ and fails on any that goes against the table below, so the layering
 * stays true without anyone policing it. docs/architecture.md explains the layers.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../../src");

/** Layer → the layers it may import (besides itself). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: [],
  store: ["core"],
  auth: ["store", "core"],
  audit: ["core"],
  proxy: ["auth", "store", "core", "audit"],
  api: ["auth", "store", "core", "audit"],
  edge: ["proxy", "auth", "store", "core", "audit"],
  server: ["edge", "api", "proxy", "auth", "store", "core", "audit"],
  cli: ["server", "edge", "api", "proxy", "auth", "store", "core", "audit"],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

function layerOf(file: string): string {
  const rel = relative(SRC, file);
  const slash = rel.indexOf("/");
  return slash < 0 ? "(top level)" : rel.slice(0, slash);
}

/** Relative specifiers of every static and dynamic import and re-export in `text`. */
export function importsOf(text: string): string[] {
  const found: string[] = [];
  const patterns = [/\bfrom\s+["'](\.[^"']+)["']/g, /\bimport\s+["'](\.[^"']+)["']/g, /\bimport\(\s*["'](\.[^"']+)["']\s*\)/g];
  for (const pattern of patterns) for (const m of text.matchAll(pattern)) found.push(m[1]!);
  return found;
}

interface Violation {
  file: string;
  imports: string;
}

function violations(): Violation[] {
  const out: Violation[] = [];
  for (const file of sourceFiles(SRC)) {
    const from = layerOf(file);
    for (const specifier of importsOf(readFileSync(file, "utf8"))) {
      const target = resolve(dirname(file), specifier);
      const to = layerOf(target);
      if (!target.startsWith(SRC + "/")) out.push({ file: relative(SRC, file), imports: `${specifier} (outside src/)` });
      else if (to !== from && !(MAY_IMPORT[from] ?? []).includes(to)) out.push({ file: relative(SRC, file), imports: relative(SRC, target) });
    }
  }
  return out;
}

describe("layers", () => {
  test("every file of src/ lives in a known layer", () => {
    const unknown = sourceFiles(SRC).map((f) => relative(SRC, f)).filter((f) => !(layerOf(join(SRC, f)) in MAY_IMPORT));
    expect(unknown).toEqual([]);
  });

  test("imports run one way: no layer imports one above it", () => {
    expect(violations()).toEqual([]);
  });

  test("the ground floor imports nothing else of src/", () => {
    const core = sourceFiles(join(SRC, "core")).flatMap((f) => importsOf(readFileSync(f, "utf8")).filter((s) => !s.startsWith("./")).map((s) => `${relative(SRC, f)} → ${s}`));
    expect(core).toEqual([]);
  });

  test("the reader sees every kind of import (a check that cannot miss one)", () => {
    const sample = `import a from "./a.ts";\nimport type { B } from "../b.ts";\nexport { c } from "./c.ts";\nimport "./d.ts";\nconst e = await import("./e.ts");`;
    expect(importsOf(sample).sort()).toEqual(["../b.ts", "./a.ts", "./c.ts", "./d.ts", "./e.ts"]);
  });
});
