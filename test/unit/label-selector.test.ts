import { describe, expect, test } from "bun:test";
import { matchesLabels, parseLabelSelector, parseNameFieldSelector, selectorFromSpec } from "../../src/store/label-selector.ts";

const matches = (selector: string, labels: Record<string, string>) => matchesLabels(parseLabelSelector(selector), labels);

describe("label selectors", () => {
  const labels = { env: "prod", tier: "web", "kpass.dev/team": "a" };
  test.each([
    ["env=prod", true],
    ["env==prod", true],
    ["env!=prod", false],
    ["env!=dev", true],
    ["env in (dev,prod)", true],
    ["env notin (prod)", false],
    ["tier", true],
    ["!tier", false],
    ["!missing", true],
    ["missing!=x", true],
    ["env=prod,tier=web,kpass.dev/team=a", true],
    ["env=prod,tier in (api)", false],
    ["", true],
  ])("%s → %p", (selector, expected) => {
    expect(matches(selector, labels)).toBe(expected);
  });

  test("malformed selectors are a 400 Status", () => {
    for (const bad of ["env=pr od", "=x", "env in (a b)", "ke y"]) {
      expect(() => parseLabelSelector(bad)).toThrow();
    }
  });

  test("structured selectors match like the string form", () => {
    const selector = selectorFromSpec({ matchLabels: { env: "prod" }, matchExpressions: [{ key: "tier", operator: "In", values: ["web", "api"] }, { key: "gone", operator: "DoesNotExist" }] });
    expect(matchesLabels(selector, labels)).toBe(true);
    expect(matchesLabels(selector, { env: "prod", tier: "db" })).toBe(false);
  });

  test("field selectors support metadata.name only", () => {
    expect(parseNameFieldSelector("metadata.name=a")("a")).toBe(true);
    expect(parseNameFieldSelector("metadata.name!=a")("a")).toBe(false);
    expect(() => parseNameFieldSelector("spec.x=a")).toThrow();
  });
});
