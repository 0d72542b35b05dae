import { badRequest } from "../core/status.ts";
import type { LabelSelectorSpec } from "../core/pass.ts";

/** One parsed requirement of a Kubernetes label selector. */
export type Requirement =
  | { key: string; op: "=" | "!="; value: string }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "exists" | "!exists" };

export type LabelSelector = Requirement[];

const KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** Splits on commas that are not inside a `( … )` value set. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms.map((t) => t.trim()).filter((t) => t.length > 0);
}

function checkKey(key: string, selector: string): string {
  if (!KEY.test(key)) throw badRequest(`unable to parse requirement: invalid label key "${key}" in selector "${selector}"`);
  return key;
}

function checkValue(value: string, selector: string): string {
  if (!VALUE.test(value)) throw badRequest(`unable to parse requirement: invalid label value "${value}" in selector "${selector}"`);
  return value;
}

function parseTerm(term: string, selector: string): Requirement {
  const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(term);
  if (set) {
    const values = set[3]!.split(",").map((v) => checkValue(v.trim(), selector));
    return { key: checkKey(set[1]!, selector), op: set[2] as "in" | "notin", values };
  }
  const compare = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
  if (compare) {
    const op = compare[2] === "!=" ? "!=" : "=";
    return { key: checkKey(compare[1]!, selector), op, value: checkValue(compare[3]!.trim(), selector) };
  }
  if (term.startsWith("!")) return { key: checkKey(term.slice(1).trim(), selector), op: "!exists" };
  return { key: checkKey(term, selector), op: "exists" };
}

/** Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`; malformed selectors are a 400. */
export function parseLabelSelector(selector: string | null | undefined): LabelSelector {
  if (!selector) return [];
  return splitTerms(selector).map((term) => parseTerm(term, selector));
}

export function matchesLabels(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  return selector.every((r) => {
    const present = Object.hasOwn(have, r.key);
    const value = have[r.key];
    switch (r.op) {
      case "=":
        return present && value === r.value;
      case "!=":
        return !present || value !== r.value;
      case "in":
        return present && r.values.includes(value!);
      case "notin":
        return !present || !r.values.includes(value!);
      case "exists":
        return present;
      case "!exists":
        return !present;
    }
  });
}

export function selectorFromSpec(spec: LabelSelectorSpec): LabelSelector {
  const requirements: Requirement[] = Object.entries(spec.matchLabels ?? {}).map(([key, value]) => ({ key, op: "=", value }));
  for (const e of spec.matchExpressions ?? []) {
    if (e.operator === "In") requirements.push({ key: e.key, op: "in", values: e.values ?? [] });
    else if (e.operator === "NotIn") requirements.push({ key: e.key, op: "notin", values: e.values ?? [] });
    else if (e.operator === "Exists") requirements.push({ key: e.key, op: "exists" });
    else requirements.push({ key: e.key, op: "!exists" });
  }
  return requirements;
}

/** Field selectors kpass supports on its own objects: metadata.name (=, ==, !=). */
export function parseNameFieldSelector(selector: string | null | undefined): (name: string) => boolean {
  if (!selector) return () => true;
  const checks = splitTerms(selector).map((term) => {
    const m = /^metadata\.name\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw badRequest(`field label not supported: "${term.split(/[=!]/)[0]}" (only metadata.name is)`);
    const value = m[2]!.trim();
    return m[1] === "!=" ? (n: string) => n !== value : (n: string) => n === value;
  });
  return (name) => checks.every((check) => check(name));
}
