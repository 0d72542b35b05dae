/**
 * A strict parser of the Prometheus text exposition format 0.0.4, as Prometheus's own
 * (prometheus/common expfmt) reads it, plus the checks `promtool check metrics` makes on types.
 * The npm parsers on offer are lenient (they accept any byte in a metric name and unknown escape
 * sequences) and unmaintained, so a scrape that a real Prometheus would reject could pass them.
 * Throws on: a malformed line, a bad metric or label name, an unknown escape, a duplicate label,
 * HELP or TYPE given twice or TYPE after the family's samples, a family split in two, a sample
 * whose name does not belong to its TYPE (histogram: _bucket/_sum/_count), a duplicate series,
 * a bucket without `le`, buckets that are not cumulative, or a +Inf bucket that differs from _count.
 */

export type MetricKind = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  /** The sample's own name (for a histogram: name_bucket, name_sum, name_count). */
  name: string;
  labels: Record<string, string>;
  value: number;
  timestampMs?: number;
}

export interface Family {
  name: string;
  help?: string;
  type: MetricKind;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricKind>(["counter", "gauge", "histogram", "summary", "untyped"]);

class ParseError extends Error {
  constructor(line: number, message: string, text: string) {
    super(`line ${line}: ${message}: ${JSON.stringify(text.slice(0, 200))}`);
  }
}

/**
 * A value as Go's strconv.ParseFloat reads it in expfmt: decimal or exponent form, and NaN, Inf,
 * Infinity (signed, any case — prom-client writes NaN as "Nan", which Prometheus accepts).
 */
function parseValue(text: string): number | undefined {
  const special = /^([-+]?)(nan|inf|infinity)$/i.exec(text);
  if (special) return special[2]!.toLowerCase() === "nan" ? (special[1] ? undefined : NaN) : special[1] === "-" ? -Infinity : Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/** Reads `{name="value",...}` from `line` at `at` (the `{`); returns the labels and the index after `}`. */
function parseLabels(line: string, at: number, lineNo: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at + 1;
  const fail = (message: string): never => {
    throw new ParseError(lineNo, message, line);
  };
  for (;;) {
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const nameStart = i;
    while (i < line.length && /[a-zA-Z0-9_]/.test(line[i]!)) i++;
    const name = line.slice(nameStart, i);
    if (!LABEL_NAME.test(name)) fail(`invalid label name "${name}"`);
    if (name.startsWith("__")) fail(`label name "${name}" is reserved`);
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] !== "=") fail(`expected "=" after label name "${name}"`);
    i++;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] !== '"') fail(`expected a quoted value for label "${name}"`);
    i++;
    let value = "";
    for (;;) {
      if (i >= line.length) fail(`unterminated value of label "${name}"`);
      const c = line[i]!;
      if (c === '"') break;
      if (c === "\\") {
        const next = line[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else fail(`invalid escape "\\${next ?? ""}" in label "${name}"`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++;
    if (name in labels) fail(`duplicate label "${name}"`);
    labels[name] = value;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] === ",") {
      i++;
      continue;
    }
    if (line[i] === "}") return { labels, end: i + 1 };
    fail(`expected "," or "}" after label "${name}"`);
  }
}

/** The family a sample name belongs to, given the families whose TYPE has been seen. */
function familyOf(sampleName: string, types: Map<string, MetricKind>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const base = sampleName.slice(0, -suffix.length);
    const type = types.get(base);
    if (type === "histogram" || (type === "summary" && suffix !== "_bucket")) return base;
  }
  return sampleName;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  const families = new Map<string, Family>();
  const types = new Map<string, MetricKind>();
  const finished = new Set<string>();
  const seriesSeen = new Set<string>();
  let current: string | undefined;
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: "untyped", samples: [] }));
    return f;
  };
  /** A family's lines must be contiguous: once another family starts, it is closed. */
  const enter = (name: string, lineNo: number, line: string) => {
    if (current === name) return;
    if (finished.has(name)) throw new ParseError(lineNo, `family "${name}" appears twice (its lines must be contiguous)`, line);
    if (current !== undefined) finished.add(current);
    current = name;
  };
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, keyword, name, rest = ""] = m as unknown as [string, "HELP" | "TYPE", string, string];
      if (!METRIC_NAME.test(name)) throw new ParseError(lineNo, `invalid metric name "${name}"`, line);
      enter(name, lineNo, line);
      const f = family(name);
      if (keyword === "HELP") {
        if (f.help !== undefined) throw new ParseError(lineNo, `second HELP for "${name}"`, line);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) throw new ParseError(lineNo, "invalid escape in HELP", line);
        f.help = rest.replace(/\\(\\|n)/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
      } else {
        if (types.has(name)) throw new ParseError(lineNo, `second TYPE for "${name}"`, line);
        if (f.samples.length > 0) throw new ParseError(lineNo, `TYPE for "${name}" after its samples`, line);
        const type = rest.trim() as MetricKind;
        if (!TYPES.has(type)) throw new ParseError(lineNo, `unknown type "${rest}"`, line);
        types.set(name, type);
        f.type = type;
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) throw new ParseError(lineNo, "a sample must start with a metric name", line);
    const name = nameMatch[0];
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === "{") ({ labels, end: i } = parseLabels(line, i, lineNo));
    const rest = line.slice(i);
    const m = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest);
    if (!m) throw new ParseError(lineNo, "expected a value (and an optional timestamp) after the name and labels", line);
    const value = parseValue(m[1]!);
    if (value === undefined) throw new ParseError(lineNo, `invalid value "${m[1]}"`, line);
    const base = familyOf(name, types);
    enter(base, lineNo, line);
    const f = family(base);
    const type = types.get(base) ?? "untyped";
    if (type === "histogram" && name === base) throw new ParseError(lineNo, `histogram "${base}" has a sample without _bucket/_sum/_count`, line);
    if (type === "histogram" && name === `${base}_bucket` && labels.le === undefined) throw new ParseError(lineNo, "a histogram bucket without le", line);
    if ((type === "counter" || type === "gauge") && name !== base) throw new ParseError(lineNo, `sample "${name}" under TYPE ${type} of "${base}"`, line);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    if (seriesSeen.has(key)) throw new ParseError(lineNo, `duplicate series ${name}${JSON.stringify(labels)}`, line);
    seriesSeen.add(key);
    f.samples.push({ name, labels, value, timestampMs: m[2] === undefined ? undefined : Number(m[2]) });
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

/** Buckets cumulative in `le`, ending with +Inf equal to _count, per label set. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  const groupOf = (labels: Record<string, string>) => {
    const { le: _le, ...rest } = labels;
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)));
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { buckets: [] }));
    return g;
  };
  for (const s of f.samples) {
    const g = groupOf(s.labels);
    if (s.name.endsWith("_bucket")) {
      const le = parseValue(s.labels.le!);
      if (le === undefined || Number.isNaN(le)) throw new Error(`${f.name}: invalid le "${s.labels.le}"`);
      g.buckets.push([le, s.value]);
    } else if (s.name.endsWith("_count")) g.count = s.value;
    else g.sum = s.value;
  }
  for (const [key, g] of groups) {
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    if (sorted.length === 0 || sorted.at(-1)![0] !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    for (let i = 1; i < sorted.length; i++) if (sorted[i]![1] < sorted[i - 1]![1]) throw new Error(`${f.name}${key}: buckets are not cumulative`);
    if (g.count === undefined || g.sum === undefined) throw new Error(`${f.name}${key}: _count or _sum missing`);
    if (sorted.at(-1)![1] !== g.count) throw new Error(`${f.name}${key}: +Inf bucket ${sorted.at(-1)![1]} differs from _count ${g.count}`);
  }
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when none, throws when several. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = samplesOf(families, name, labels);
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches[0]?.value;
}

/** Every sample named `name` (a family name, or name_bucket/_sum/_count) whose labels include `labels`. */
export function samplesOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): Sample[] {
  const out: Sample[] = [];
  for (const f of families.values()) for (const s of f.samples) if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) out.push(s);
  return out;
}
