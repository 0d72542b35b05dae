import { describe, expect, test } from "bun:test";
import {
  PathError,
  describeAttributes,
  isDiscoveryPath,
  requestAttributes,
  type RequestAttributeOptions,
  type RequestAttributes,
} from "../../src/auth/request-attributes.ts";

/** Parses "METHOD /path?query" the way the gateway hands requests over. */
function parse(method: string, url: string, options?: RequestAttributeOptions): RequestAttributes {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? "" : url.slice(q + 1));
  return requestAttributes(method, path, query, options);
}

type ResourceFields = Pick<RequestAttributes, "verb" | "resource"> & Partial<RequestAttributes>;

function resource(path: string, fields: ResourceFields): RequestAttributes {
  return {
    isResourceRequest: true,
    apiGroup: "",
    apiVersion: "v1",
    subresource: "",
    namespace: "",
    name: "",
    path,
    ...fields,
  };
}

function nonResource(verb: string, path: string): RequestAttributes {
  return {
    isResourceRequest: false,
    verb,
    apiGroup: "",
    apiVersion: "",
    resource: "",
    subresource: "",
    namespace: "",
    name: "",
    path,
  };
}

interface Row {
  what: string;
  method: string;
  url: string;
  options?: RequestAttributeOptions;
  want: RequestAttributes;
}

// Requests as kubectl (1.27–1.33) and client-go actually send them.
const rows: Row[] = [
  {
    what: "kubectl get pods",
    method: "GET",
    url: "/api/v1/namespaces/default/pods?limit=500",
    want: resource("/api/v1/namespaces/default/pods", { verb: "list", resource: "pods", namespace: "default" }),
  },
  {
    what: "kubectl get pods -A",
    method: "GET",
    url: "/api/v1/pods?limit=500",
    want: resource("/api/v1/pods", { verb: "list", resource: "pods" }),
  },
  {
    what: "kubectl get pods -A -w (the watch after the list)",
    method: "GET",
    url: "/api/v1/pods?resourceVersion=48213&watch=true",
    want: resource("/api/v1/pods", { verb: "watch", resource: "pods" }),
  },
  {
    what: "client-go reflector watch (watch=1, bookmarks, timeout)",
    method: "GET",
    url: "/api/v1/namespaces/team-a/configmaps?allowWatchBookmarks=true&resourceVersion=1&timeout=7m3s&timeoutSeconds=423&watch=1",
    want: resource("/api/v1/namespaces/team-a/configmaps", { verb: "watch", resource: "configmaps", namespace: "team-a" }),
  },
  {
    what: "watch=false is a list",
    method: "GET",
    url: "/api/v1/namespaces/team-a/pods?watch=false",
    want: resource("/api/v1/namespaces/team-a/pods", { verb: "list", resource: "pods", namespace: "team-a" }),
  },
  {
    what: "watch=0 is a list",
    method: "GET",
    url: "/api/v1/namespaces/team-a/pods?watch=0",
    want: resource("/api/v1/namespaces/team-a/pods", { verb: "list", resource: "pods", namespace: "team-a" }),
  },
  {
    what: "watch with an empty value is a watch (as Kubernetes reads booleans)",
    method: "GET",
    url: "/api/v1/namespaces/team-a/pods?watch=",
    want: resource("/api/v1/namespaces/team-a/pods", { verb: "watch", resource: "pods", namespace: "team-a" }),
  },
  {
    what: "kubectl get pod web-0 -w: watch narrowed by fieldSelector metadata.name",
    method: "GET",
    url: "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb-0&resourceVersion=48213&watch=true",
    want: resource("/api/v1/namespaces/default/pods", { verb: "watch", resource: "pods", namespace: "default", name: "web-0" }),
  },
  {
    what: "kubectl get pod web-0 -w: the initial list is narrowed too",
    method: "GET",
    url: "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb-0&limit=500",
    want: resource("/api/v1/namespaces/default/pods", { verb: "list", resource: "pods", namespace: "default", name: "web-0" }),
  },
  {
    what: "fieldSelector metadata.name==x among other terms",
    method: "GET",
    url: "/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DRunning%2Cmetadata.name%3D%3Dweb-1",
    want: resource("/api/v1/namespaces/default/pods", { verb: "list", resource: "pods", namespace: "default", name: "web-1" }),
  },
  {
    what: "fieldSelector metadata.name!=x names nothing",
    method: "GET",
    url: "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%21%3Dweb-0",
    want: resource("/api/v1/namespaces/default/pods", { verb: "list", resource: "pods", namespace: "default" }),
  },
  {
    what: "fieldSelector that does not parse names nothing",
    method: "GET",
    url: "/api/v1/namespaces/default/pods?fieldSelector=metadata.name",
    want: resource("/api/v1/namespaces/default/pods", { verb: "list", resource: "pods", namespace: "default" }),
  },
  {
    what: "kubectl get pod web-0",
    method: "GET",
    url: "/api/v1/namespaces/default/pods/web-0",
    want: resource("/api/v1/namespaces/default/pods/web-0", { verb: "get", resource: "pods", namespace: "default", name: "web-0" }),
  },
  {
    what: "GET on a named object with watch=true is still a get (Kubernetes serves it as a get)",
    method: "GET",
    url: "/api/v1/namespaces/default/pods/web-0?watch=true",
    want: resource("/api/v1/namespaces/default/pods/web-0", { verb: "get", resource: "pods", namespace: "default", name: "web-0" }),
  },
  {
    what: "HEAD on an object is a get",
    method: "HEAD",
    url: "/api/v1/namespaces/default/pods/web-0",
    want: resource("/api/v1/namespaces/default/pods/web-0", { verb: "get", resource: "pods", namespace: "default", name: "web-0" }),
  },
  {
    what: "kubectl exec (SPDY, kubectl <= 1.29)",
    method: "POST",
    url: "/api/v1/namespaces/default/pods/web-0/exec?command=sh&container=main&stdin=true&stdout=true&tty=true",
    want: resource("/api/v1/namespaces/default/pods/web-0/exec", {
      verb: "create",
      resource: "pods",
      subresource: "exec",
      namespace: "default",
      name: "web-0",
    }),
  },
  {
    what: "kubectl exec (WebSocket GET, kubectl >= 1.30) needs create",
    method: "GET",
    url: "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=ls&container=main&stderr=true&stdout=true",
    want: resource("/api/v1/namespaces/default/pods/web-0/exec", {
      verb: "create",
      resource: "pods",
      subresource: "exec",
      namespace: "default",
      name: "web-0",
    }),
  },
  {
    what: "kubectl attach",
    method: "POST",
    url: "/api/v1/namespaces/default/pods/web-0/attach?container=main&stdin=true&stdout=true&tty=true",
    want: resource("/api/v1/namespaces/default/pods/web-0/attach", {
      verb: "create",
      resource: "pods",
      subresource: "attach",
      namespace: "default",
      name: "web-0",
    }),
  },
  {
    what: "kubectl port-forward (SPDY)",
    method: "POST",
    url: "/api/v1/namespaces/default/pods/web-0/portforward",
    want: resource("/api/v1/namespaces/default/pods/web-0/portforward", {
      verb: "create",
      resource: "pods",
      subresource: "portforward",
      namespace: "default",
      name: "web-0",
    }),
  },
  {
    what: "kubectl port-forward (WebSocket GET, kubectl >= 1.31)",
    method: "GET",
    url: "/api/v1/namespaces/default/pods/web-0/portforward?ports=8080",
    want: resource("/api/v1/namespaces/default/pods/web-0/portforward", {
      verb: "create",
      resource: "pods",
      subresource: "portforward",
      namespace: "default",
      name: "web-0",
    }),
  },
  {
    what: "kubectl logs -f",
    method: "GET",
    url: "/api/v1/namespaces/default/pods/web-0/log?container=main&follow=true",
    want: resource("/api/v1/namespaces/default/pods/web-0/log", {
      verb: "get",
      resource: "pods",
      subresource: "log",
      namespace: "default",
      name: "web-0",
    }),
  },
  {
    what: "kubectl apply (patch) on a deployment",
    method: "PATCH",
    url: "/apis/apps/v1/namespaces/x/deployments/d?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
    want: resource("/apis/apps/v1/namespaces/x/deployments/d", {
      verb: "patch",
      apiGroup: "apps",
      resource: "deployments",
      namespace: "x",
      name: "d",
    }),
  },
  {
    what: "kubectl create -f deployment",
    method: "POST",
    url: "/apis/apps/v1/namespaces/x/deployments?fieldManager=kubectl-create&fieldValidation=Strict",
    want: resource("/apis/apps/v1/namespaces/x/deployments", { verb: "create", apiGroup: "apps", resource: "deployments", namespace: "x" }),
  },
  {
    what: "scale subresource update",
    method: "PUT",
    url: "/apis/apps/v1/namespaces/x/deployments/d/scale",
    want: resource("/apis/apps/v1/namespaces/x/deployments/d/scale", {
      verb: "update",
      apiGroup: "apps",
      resource: "deployments",
      subresource: "scale",
      namespace: "x",
      name: "d",
    }),
  },
  {
    what: "kubectl scale (patch on scale)",
    method: "PATCH",
    url: "/apis/apps/v1/namespaces/x/deployments/d/scale",
    want: resource("/apis/apps/v1/namespaces/x/deployments/d/scale", {
      verb: "patch",
      apiGroup: "apps",
      resource: "deployments",
      subresource: "scale",
      namespace: "x",
      name: "d",
    }),
  },
  {
    what: "kubectl delete configmap c",
    method: "DELETE",
    url: "/api/v1/namespaces/x/configmaps/c",
    want: resource("/api/v1/namespaces/x/configmaps/c", { verb: "delete", resource: "configmaps", namespace: "x", name: "c" }),
  },
  {
    what: "client-go DeleteCollection with a label selector",
    method: "DELETE",
    url: "/api/v1/namespaces/x/configmaps?labelSelector=a",
    want: resource("/api/v1/namespaces/x/configmaps", { verb: "deletecollection", resource: "configmaps", namespace: "x" }),
  },
  {
    what: "kubectl drain: eviction",
    method: "POST",
    url: "/api/v1/namespaces/x/pods/web-0/eviction",
    want: resource("/api/v1/namespaces/x/pods/web-0/eviction", {
      verb: "create",
      resource: "pods",
      subresource: "eviction",
      namespace: "x",
      name: "web-0",
    }),
  },
  {
    what: "kubectl debug: ephemeral containers",
    method: "PATCH",
    url: "/api/v1/namespaces/x/pods/web-0/ephemeralcontainers",
    want: resource("/api/v1/namespaces/x/pods/web-0/ephemeralcontainers", {
      verb: "patch",
      resource: "pods",
      subresource: "ephemeralcontainers",
      namespace: "x",
      name: "web-0",
    }),
  },
  {
    what: "kubectl get ns team-a: the namespace is its own namespace",
    method: "GET",
    url: "/api/v1/namespaces/team-a",
    want: resource("/api/v1/namespaces/team-a", { verb: "get", resource: "namespaces", namespace: "team-a", name: "team-a" }),
  },
  {
    what: "kubectl get ns",
    method: "GET",
    url: "/api/v1/namespaces?limit=500",
    want: resource("/api/v1/namespaces", { verb: "list", resource: "namespaces" }),
  },
  {
    what: "kubectl create ns",
    method: "POST",
    url: "/api/v1/namespaces?fieldManager=kubectl-create",
    want: resource("/api/v1/namespaces", { verb: "create", resource: "namespaces" }),
  },
  {
    what: "kubectl delete ns team-a",
    method: "DELETE",
    url: "/api/v1/namespaces/team-a",
    want: resource("/api/v1/namespaces/team-a", { verb: "delete", resource: "namespaces", namespace: "team-a", name: "team-a" }),
  },
  {
    what: "namespace finalize subresource",
    method: "PUT",
    url: "/api/v1/namespaces/team-a/finalize",
    want: resource("/api/v1/namespaces/team-a/finalize", {
      verb: "update",
      resource: "namespaces",
      subresource: "finalize",
      namespace: "team-a",
      name: "team-a",
    }),
  },
  {
    what: "namespace status subresource",
    method: "GET",
    url: "/api/v1/namespaces/team-a/status",
    want: resource("/api/v1/namespaces/team-a/status", {
      verb: "get",
      resource: "namespaces",
      subresource: "status",
      namespace: "team-a",
      name: "team-a",
    }),
  },
  {
    what: "legacy watch prefix, group API",
    method: "GET",
    url: "/apis/apps/v1/watch/namespaces/x/deployments",
    want: resource("/apis/apps/v1/watch/namespaces/x/deployments", { verb: "watch", apiGroup: "apps", resource: "deployments", namespace: "x" }),
  },
  {
    what: "legacy watch prefix, core, one object",
    method: "GET",
    url: "/api/v1/watch/namespaces/x/pods/web-0",
    want: resource("/api/v1/watch/namespaces/x/pods/web-0", { verb: "watch", resource: "pods", namespace: "x", name: "web-0" }),
  },
  {
    what: "legacy watch prefix, all namespaces",
    method: "GET",
    url: "/api/v1/watch/pods",
    want: resource("/api/v1/watch/pods", { verb: "watch", resource: "pods" }),
  },
  {
    what: "legacy proxy prefix: verb proxy, no subresource (as Kubernetes reads it)",
    method: "GET",
    url: "/api/v1/proxy/namespaces/x/pods/web-0/metrics",
    want: resource("/api/v1/proxy/namespaces/x/pods/web-0/metrics", { verb: "proxy", resource: "pods", namespace: "x", name: "web-0" }),
  },
  {
    what: "service proxy via kubectl get --raw",
    method: "GET",
    url: "/api/v1/namespaces/x/services/http:web:80/proxy/metrics",
    want: resource("/api/v1/namespaces/x/services/http:web:80/proxy/metrics", {
      verb: "get",
      resource: "services",
      subresource: "proxy",
      namespace: "x",
      name: "http:web:80",
    }),
  },
  {
    what: "pod proxy opened as an upgrade needs create",
    method: "GET",
    url: "/api/v1/namespaces/x/pods/web-0/proxy/socket",
    options: { upgrade: true },
    want: resource("/api/v1/namespaces/x/pods/web-0/proxy/socket", {
      verb: "create",
      resource: "pods",
      subresource: "proxy",
      namespace: "x",
      name: "web-0",
    }),
  },
  {
    what: "node proxy (cluster-scoped)",
    method: "GET",
    url: "/api/v1/nodes/n1/proxy/stats/summary",
    want: resource("/api/v1/nodes/n1/proxy/stats/summary", { verb: "get", resource: "nodes", subresource: "proxy", name: "n1" }),
  },
  {
    what: "kubectl top pod",
    method: "GET",
    url: "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
    want: resource("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", {
      verb: "list",
      apiGroup: "metrics.k8s.io",
      apiVersion: "v1beta1",
      resource: "pods",
      namespace: "default",
    }),
  },
  {
    what: "kubectl auth can-i (cluster-scoped create)",
    method: "POST",
    url: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    want: resource("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      verb: "create",
      apiGroup: "authorization.k8s.io",
      resource: "selfsubjectaccessreviews",
    }),
  },
  {
    what: "kubectl certificate approve",
    method: "PUT",
    url: "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr-1/approval",
    want: resource("/apis/certificates.k8s.io/v1/certificatesigningrequests/csr-1/approval", {
      verb: "update",
      apiGroup: "certificates.k8s.io",
      resource: "certificatesigningrequests",
      subresource: "approval",
      name: "csr-1",
    }),
  },
  {
    what: "custom resource status",
    method: "GET",
    url: "/apis/example.com/v1alpha1/namespaces/x/widgets/w1/status",
    want: resource("/apis/example.com/v1alpha1/namespaces/x/widgets/w1/status", {
      verb: "get",
      apiGroup: "example.com",
      apiVersion: "v1alpha1",
      resource: "widgets",
      subresource: "status",
      namespace: "x",
      name: "w1",
    }),
  },
  {
    what: "kpass's own cluster proxy path",
    method: "GET",
    url: "/apis/cluster.kpass.dev/v1beta1/clusters/prod/proxy/api/v1/pods",
    want: resource("/apis/cluster.kpass.dev/v1beta1/clusters/prod/proxy/api/v1/pods", {
      verb: "get",
      apiGroup: "cluster.kpass.dev",
      apiVersion: "v1beta1",
      resource: "clusters",
      subresource: "proxy",
      name: "prod",
    }),
  },
  {
    what: "percent-encoded name is decoded once",
    method: "GET",
    url: "/api/v1/namespaces/x/configmaps/a%3Ab",
    want: resource("/api/v1/namespaces/x/configmaps/a:b", { verb: "get", resource: "configmaps", namespace: "x", name: "a:b" }),
  },
  {
    what: "double-encoded dots stay literal after one decode",
    method: "GET",
    url: "/api/v1/namespaces/x/configmaps/%252e%252e",
    want: resource("/api/v1/namespaces/x/configmaps/%2e%2e", { verb: "get", resource: "configmaps", namespace: "x", name: "%2e%2e" }),
  },
  {
    what: "one trailing slash is trimmed for parsing (kept in path)",
    method: "GET",
    url: "/api/v1/namespaces/x/pods/",
    want: resource("/api/v1/namespaces/x/pods/", { verb: "list", resource: "pods", namespace: "x" }),
  },
  {
    what: "lower-case method is accepted",
    method: "get",
    url: "/api/v1/namespaces/x/pods",
    want: resource("/api/v1/namespaces/x/pods", { verb: "list", resource: "pods", namespace: "x" }),
  },
  {
    what: "a method Kubernetes has no verb for",
    method: "OPTIONS",
    url: "/api/v1/namespaces/x/pods",
    want: resource("/api/v1/namespaces/x/pods", { verb: "", resource: "pods", namespace: "x" }),
  },
  // Discovery and other non-resource requests.
  { what: "discovery /api", method: "GET", url: "/api?timeout=32s", want: nonResource("get", "/api") },
  { what: "discovery /api/v1", method: "GET", url: "/api/v1?timeout=32s", want: nonResource("get", "/api/v1") },
  { what: "discovery /apis", method: "GET", url: "/apis?timeout=32s", want: nonResource("get", "/apis") },
  { what: "discovery /apis/apps", method: "GET", url: "/apis/apps", want: nonResource("get", "/apis/apps") },
  { what: "discovery /apis/apps/v1", method: "GET", url: "/apis/apps/v1?timeout=32s", want: nonResource("get", "/apis/apps/v1") },
  {
    what: "discovery of kpass's own group version",
    method: "GET",
    url: "/apis/cluster.kpass.dev/v1beta1",
    want: nonResource("get", "/apis/cluster.kpass.dev/v1beta1"),
  },
  { what: "/version", method: "GET", url: "/version?timeout=32s", want: nonResource("get", "/version") },
  { what: "/openapi/v2", method: "GET", url: "/openapi/v2?timeout=32s", want: nonResource("get", "/openapi/v2") },
  {
    what: "/openapi/v3 group document",
    method: "GET",
    url: "/openapi/v3/apis/apps/v1?hash=9A1B3F0C2E&timeout=32s",
    want: nonResource("get", "/openapi/v3/apis/apps/v1"),
  },
  { what: "/healthz", method: "GET", url: "/healthz", want: nonResource("get", "/healthz") },
  { what: "/metrics", method: "GET", url: "/metrics", want: nonResource("get", "/metrics") },
  { what: "/logs/kube-apiserver.log", method: "GET", url: "/logs/kube-apiserver.log", want: nonResource("get", "/logs/kube-apiserver.log") },
  { what: "root", method: "GET", url: "/", want: nonResource("get", "/") },
  { what: "POST to a non-resource path keeps the method", method: "POST", url: "/healthz", want: nonResource("post", "/healthz") },
];

describe("requestAttributes", () => {
  for (const row of rows) {
    test(`${row.what}: ${row.method} ${row.url}`, () => {
      expect(parse(row.method, row.url, row.options)).toEqual(row.want);
    });
  }
});

describe("requestAttributes refuses paths another hop could read differently", () => {
  const refused: [string, string][] = [
    ["dot-dot segment", "/api/v1/namespaces/../secrets"],
    ["dot segment", "/api/v1/namespaces/./pods"],
    ["encoded dot-dot (lower case)", "/api/v1/namespaces/%2e%2e/secrets"],
    ["encoded dot-dot (mixed case)", "/api/v1/namespaces/team-a/pods/%2E%2e"],
    ["encoded single dot", "/api/v1/namespaces/%2E/pods"],
    ["half-encoded dot-dot", "/api/v1/namespaces/.%2e/secrets"],
    ["dot-dot in a non-resource path", "/healthz/../api/v1/secrets"],
    ["dot-dot at the end", "/api/v1/namespaces/x/pods/.."],
    ["empty segment in the middle", "/api/v1//pods"],
    ["leading double slash", "//api/v1/pods"],
    ["two trailing slashes", "/api/v1/pods//"],
    ["encoded slash in a segment", "/api/v1/namespaces/a%2Fpods"],
    ["encoded slash (lower case)", "/api/v1/namespaces/x/configmaps/a%2fb"],
    ["encoded NUL", "/api/v1/namespaces/x/pods/web%00"],
    ["raw NUL", "/api/v1/namespaces/x/pods/web\u0000"],
    ["malformed escape", "/api/v1/namespaces/x/pods/%zz"],
    ["escape that is not UTF-8", "/api/v1/namespaces/x/pods/%ff"],
    ["relative path", "api/v1/pods"],
    ["empty path", ""],
    ["legacy watch prefix without a resource", "/apis/apps/v1/watch"],
  ];
  for (const [what, path] of refused) {
    test(`${what}: ${JSON.stringify(path)}`, () => {
      expect(() => requestAttributes("GET", path, new URLSearchParams())).toThrow(PathError);
    });
  }

  test("PathError carries the refused path", () => {
    try {
      requestAttributes("GET", "/api/v1/namespaces/%2e%2e/secrets", new URLSearchParams());
      throw new Error("expected a PathError");
    } catch (error) {
      expect(error).toBeInstanceOf(PathError);
      expect((error as PathError).path).toBe("/api/v1/namespaces/%2e%2e/secrets");
      expect((error as PathError).name).toBe("PathError");
    }
  });
});

describe("requestAttributes refuses query values the cluster would read differently", () => {
  // Go's url.ParseQuery drops a pair holding a raw ";" or a malformed escape; URLSearchParams keeps it.
  // Were kpass to read such a fieldSelector, it could authorize "list configmaps named app" while the
  // cluster serves an unfiltered list.
  const refused: [string, string][] = [
    ["fieldSelector with a raw semicolon", "/api/v1/namespaces/x/configmaps?fieldSelector=metadata.name%3Dapp%2Cx%3D;"],
    ["fieldSelector with a malformed escape", "/api/v1/namespaces/x/configmaps?fieldSelector=metadata.name%3Dapp%2Cx%3D%zz"],
    ["watch with a raw semicolon", "/api/v1/namespaces/x/configmaps?watch=true;&watch=false"],
    ["watch with a malformed escape", "/api/v1/namespaces/x/configmaps?watch=%zz"],
  ];
  for (const [what, url] of refused) {
    test(`${what}: ${url}`, () => {
      expect(() => parse("GET", url)).toThrow(PathError);
    });
  }

  test("query values that play no part in the decision are not inspected", () => {
    expect(parse("GET", "/api/v1/namespaces/x/pods/p?fieldSelector=%zz&watch=;")).toEqual(
      resource("/api/v1/namespaces/x/pods/p", { verb: "get", resource: "pods", namespace: "x", name: "p" }),
    );
    expect(parse("GET", "/api/v1/namespaces/x/pods?labelSelector=a%3Bb&limit=500")).toEqual(
      resource("/api/v1/namespaces/x/pods", { verb: "list", resource: "pods", namespace: "x" }),
    );
  });
});

describe("isDiscoveryPath", () => {
  const yes = [
    "/api",
    "/api/",
    "/api/v1",
    "/apis",
    "/apis/apps",
    "/apis/apps/v1",
    "/apis/cluster.kpass.dev/v1beta1",
    "/version",
    "/version/",
    "/openapi/v2",
    "/openapi/v3",
    "/openapi/v3/apis/apps/v1",
  ];
  const no = [
    "/",
    "/api/v1/pods",
    "/api/v1/namespaces",
    "/apis/apps/v1/deployments",
    "/apis/cluster.kpass.dev/v1beta1/clusters",
    "/healthz",
    "/metrics",
    "/logs",
    "/version/extra",
    "/apis/../api/v1/secrets",
    "/api/%2e%2e",
    "/apis//apps",
    "/apiss",
  ];
  for (const path of yes) test(`${path} is discovery`, () => expect(isDiscoveryPath(path)).toBe(true));
  for (const path of no) test(`${path} is not discovery`, () => expect(isDiscoveryPath(path)).toBe(false));

  test("every discovery path is a non-resource request", () => {
    for (const path of yes) expect(requestAttributes("GET", path, new URLSearchParams()).isResourceRequest).toBe(false);
  });
});

describe("describeAttributes", () => {
  const cases: [string, string, string][] = [
    ["POST", "/api/v1/namespaces/team-a/pods/web-0/exec?command=sh", 'create pods/exec "web-0" in namespace "team-a"'],
    ["GET", "/apis/apps/v1/deployments", "list deployments.apps in all namespaces"],
    ["GET", "/apis/apps/v1/namespaces/x/deployments?watch=1", 'watch deployments.apps in namespace "x"'],
    ["PUT", "/apis/apps/v1/namespaces/x/deployments/d/scale", 'update deployments.apps/scale "d" in namespace "x"'],
    ["GET", "/healthz", 'get path "/healthz"'],
    ["GET", "/api/v1/namespaces/team-a", 'get namespaces "team-a"'],
    ["GET", "/api/v1/namespaces", "list namespaces"],
    ["GET", "/api/v1/nodes", "list nodes"],
    ["GET", "/api/v1/nodes/n1", 'get nodes "n1"'],
    ["DELETE", "/api/v1/namespaces/x/configmaps?labelSelector=a", 'deletecollection configmaps in namespace "x"'],
    ["GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb-0&watch=true", 'watch pods "web-0" in all namespaces'],
  ];
  for (const [method, url, phrase] of cases) {
    test(`${method} ${url}`, () => expect(describeAttributes(parse(method, url))).toBe(phrase));
  }

  test("impersonation attributes built by the caller", () => {
    const a: RequestAttributes = {
      isResourceRequest: true,
      verb: "impersonate",
      apiGroup: "",
      apiVersion: "",
      resource: "users",
      subresource: "",
      namespace: "",
      name: "bob",
      path: "",
    };
    expect(describeAttributes(a)).toBe('impersonate users "bob"');
  });

  test("names are quoted safely", () => {
    expect(describeAttributes(parse("GET", "/api/v1/namespaces/x/configmaps/a%22b"))).toBe('get configmaps "a\\"b" in namespace "x"');
  });
});
