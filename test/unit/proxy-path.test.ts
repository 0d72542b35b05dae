import { describe, expect, test } from "bun:test";
import { parseProxyTarget } from "../../src/proxy/proxy-path.ts";

const P = "/apis/cluster.kpass.dev/v1beta1/clusters";

describe("parseProxyTarget", () => {
  test("splits cluster, path and the whole query, keeping encoding", () => {
    expect(parseProxyTarget(`${P}/prod/proxy/api/v1/namespaces/a/pods/x/exec?command=sh&command=-c&command=echo%20hi&stdin=true`)).toEqual({
      cluster: "prod",
      path: "/api/v1/namespaces/a/pods/x/exec",
      search: "?command=sh&command=-c&command=echo%20hi&stdin=true",
    });
    expect(parseProxyTarget(`${P}/prod/proxy`)).toEqual({ cluster: "prod", path: "/", search: "" });
    expect(parseProxyTarget(`${P}/prod/proxy/`)).toEqual({ cluster: "prod", path: "/", search: "" });
  });

  test("non-proxy paths are not proxy targets", () => {
    expect(parseProxyTarget(`${P}/prod`)).toBeUndefined();
    expect(parseProxyTarget(`${P}/prod/status`)).toBeUndefined();
    expect(parseProxyTarget(`${P}/prod/proxyx/api`)).toBeUndefined();
    expect(parseProxyTarget("/api/v1/pods")).toBeUndefined();
  });

  test("dot segments in any spelling, NULs and encoded slashes in the name are refused", () => {
    for (const bad of ["/api/../x", "/api/%2e%2e/x", "/api/%2E./x", "/api/./x", "/api/x/..", "/api/x%00"]) {
      expect(() => parseProxyTarget(`${P}/prod/proxy${bad}`)).toThrow();
    }
    expect(() => parseProxyTarget(`${P}/a%2Fb/proxy/api`)).toThrow();
  });
});
