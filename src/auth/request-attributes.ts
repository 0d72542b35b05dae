/**
 * Kubernetes request attributes parsed from an HTTP method, path and query — the same
 * reading kube-apiserver's RequestInfoFactory makes, so that kpass authorizes exactly the
 * request the cluster will serve.
 *
 * Paths are checked strictly before they are read: every segment is percent-decoded once,
 * and a path that could be read differently by another hop (dot segments, empty segments,
 * an encoded slash, a NUL, malformed escapes) is refused with a PathError.
 */

export interface RequestAttributes {
  isResourceRequest: boolean;
  /**
   * Resource requests: get list watch create update patch delete deletecollection, "create" for
   * exec/attach/portforward (and proxy upgrades), "watch"/"proxy" from the legacy path prefixes,
   * "" for an HTTP method Kubernetes has no verb for. Non-resource requests: the lower-case HTTP method.
   */
  verb: string;
  /** "" for the core group. */
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  /** "" when cluster-scoped or across all namespaces. For the namespaces resource itself, the namespace's name. */
  namespace: string;
  name: string;
  /** The percent-decoded path (a trailing slash is kept, as Kubernetes matches nonResourceURLs on it). */
  path: string;
}

export interface RequestAttributeOptions {
  /**
   * The request asks for a connection upgrade (SPDY or WebSocket). A proxy subresource
   * (pods/proxy, services/proxy, nodes/proxy, …) opened as an upgrade needs "create".
   */
  upgrade?: boolean;
}

/** A request path kpass refuses to interpret; the caller answers 400 and forwards nothing. */
export class PathError extends Error {
  override readonly name = "PathError";
  readonly path: string;
  constructor(message: string, path: string) {
    super(message);
    this.path = path;
  }
}

/** Legacy path prefixes that carry the verb (`/api/v1/watch/...`, `/api/v1/proxy/...`). */
const SPECIAL_VERBS: ReadonlySet<string> = new Set(["watch", "proxy"]);
/** Subresources of a namespace: `/api/v1/namespaces/{name}/status` is not a resource inside the namespace. */
const NAMESPACE_SUBRESOURCES: ReadonlySet<string> = new Set(["status", "finalize"]);
/** Streaming subresources that need "create" whatever the HTTP method (a WebSocket exec is a GET). */
const CREATE_SUBRESOURCES: ReadonlySet<string> = new Set(["exec", "attach", "portforward"]);

interface ParsedPath {
  segments: string[];
  path: string;
}

function decodeSegment(raw: string, path: string): string {
  if (raw === "") throw new PathError("empty path segment", path);
  let decoded = raw;
  // Only an escape can make decoding differ or throw.
  if (raw.includes("%")) {
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      throw new PathError("malformed percent-encoding in path", path);
    }
  }
  if (decoded === "." || decoded === "..") throw new PathError("dot segment in path", path);
  if (decoded.includes("/")) throw new PathError("encoded slash in path segment", path);
  if (decoded.includes("\0")) throw new PathError("NUL in path", path);
  return decoded;
}

/** Splits and decodes a path; one trailing slash is tolerated (Kubernetes trims it), nothing else empty. */
function parsePath(path: string): ParsedPath {
  if (!path.startsWith("/")) throw new PathError('path must start with "/"', path);
  if (path === "/") return { segments: [], path: "/" };
  let body = path.slice(1);
  let trailingSlash = false;
  if (body.endsWith("/")) {
    body = body.slice(0, -1);
    trailingSlash = true;
  }
  const segments = body.split("/").map((raw) => decodeSegment(raw, path));
  return { segments, path: "/" + segments.join("/") + (trailingSlash ? "/" : "") };
}

function methodVerb(method: string): string {
  switch (method) {
    case "POST":
      return "create";
    case "GET":
    case "HEAD":
      return "get";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    case "DELETE":
      return "delete";
    default:
      return "";
  }
}

/**
 * The first value of a query parameter that decides authorization, as the cluster (Go's
 * url.ParseQuery) will read it. Go drops every pair that holds a raw ";" or a malformed escape,
 * where URLSearchParams keeps them; so a value containing ";" or "%" (which a well-formed,
 * once-decoded watch flag or field selector never needs) is refused rather than guessed at.
 */
function authzQueryValue(query: URLSearchParams, key: string, path: string): string | null {
  const values = query.getAll(key);
  for (const value of values) {
    if (value.includes(";") || value.includes("%")) throw new PathError(`query parameter ${key} contains ";" or "%"`, path);
  }
  return values[0] ?? null;
}

/** A query boolean as Kubernetes reads it: absent, "0" or "false" (any case) is false; anything else, even "", is true. */
function queryBool(value: string | null): boolean {
  if (value === null) return false;
  return !(value === "0" || value.toLowerCase() === "false");
}

/** Splits a field selector on commas that are not backslash-escaped. */
function splitSelectorTerms(selector: string): string[] {
  const terms: string[] = [];
  let start = 0;
  let escaped = false;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (escaped) escaped = false;
    else if (c === "\\") escaped = true;
    else if (c === ",") {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms;
}

/** Undoes field-selector value escaping (`\\`, `\,`, `\=`); undefined for any other escape. */
function unescapeSelectorValue(value: string): string | undefined {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const next = value[i + 1];
    if (next !== "\\" && next !== "," && next !== "=") return undefined;
    out += next;
    i++;
  }
  return out;
}

/**
 * The name a list/watch is narrowed to by `fieldSelector=metadata.name=X` (or `==`), as Kubernetes
 * derives it for authorization. Undefined when the selector does not parse or names nothing usable.
 */
function fieldSelectorName(selector: string | null): string | undefined {
  if (!selector) return undefined;
  const terms = splitSelectorTerms(selector);
  const parsed: { field: string; op: string; value: string }[] = [];
  for (const term of terms) {
    if (term === "") continue;
    let found: { field: string; op: string; value: string } | undefined;
    for (let i = 0; i < term.length && !found; i++) {
      for (const op of ["!=", "==", "="]) {
        if (term.startsWith(op, i)) {
          found = { field: term.slice(0, i), op, value: term.slice(i + op.length) };
          break;
        }
      }
    }
    if (!found) return undefined; // the whole selector is invalid
    const value = unescapeSelectorValue(found.value);
    if (value === undefined) return undefined;
    parsed.push({ ...found, value });
  }
  for (const term of parsed) {
    if (term.field === "metadata.name" && term.op !== "!=") {
      const name = term.value;
      if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("%")) return undefined;
      return name;
    }
  }
  return undefined;
}

/** The verb as RequestInfoFactory settles it once the resource, name and subresource are known. */
function refineVerb(attributes: RequestAttributes, query: URLSearchParams, path: string, options: RequestAttributeOptions): void {
  if (attributes.name === "" && attributes.verb === "get") {
    attributes.verb = queryBool(authzQueryValue(query, "watch", path)) ? "watch" : "list";
    const selected = fieldSelectorName(authzQueryValue(query, "fieldSelector", path));
    if (selected !== undefined) attributes.name = selected;
  }
  if (attributes.name === "" && attributes.verb === "delete") attributes.verb = "deletecollection";
  if (CREATE_SUBRESOURCES.has(attributes.subresource)) attributes.verb = "create";
  else if (options.upgrade === true && attributes.subresource === "proxy") attributes.verb = "create";
}

/**
 * Kubernetes request attributes for one request. `path` is the raw (still percent-encoded) path
 * without the query string; `query` the parsed query. Throws PathError for a path (or a watch /
 * fieldSelector query value) that must be refused rather than interpreted.
 */
export function requestAttributes(
  method: string,
  path: string,
  query: URLSearchParams,
  options: RequestAttributeOptions = {},
): RequestAttributes {
  const httpMethod = method.toUpperCase();
  const parsed = parsePath(path);
  const segments = parsed.segments;
  const attributes: RequestAttributes = {
    isResourceRequest: false,
    verb: httpMethod.toLowerCase(),
    apiGroup: "",
    apiVersion: "",
    resource: "",
    subresource: "",
    namespace: "",
    name: "",
    path: parsed.path,
  };

  // /api/{version}/{resource...} and /apis/{group}/{version}/{resource...}; anything shorter is discovery.
  let parts: string[];
  if (segments[0] === "api" && segments.length >= 3) {
    parts = segments.slice(1);
  } else if (segments[0] === "apis" && segments.length >= 4) {
    attributes.apiGroup = segments[1] ?? "";
    parts = segments.slice(2);
  } else {
    return attributes;
  }
  attributes.isResourceRequest = true;
  attributes.apiVersion = parts[0] ?? "";
  parts = parts.slice(1);

  const first = parts[0] ?? "";
  if (SPECIAL_VERBS.has(first)) {
    if (parts.length < 2) throw new PathError(`"${first}" must be followed by a resource`, path);
    attributes.verb = first;
    parts = parts.slice(1);
  } else {
    attributes.verb = methodVerb(httpMethod);
  }

  if (parts[0] === "namespaces" && parts.length > 1) {
    attributes.namespace = parts[1] ?? "";
    // namespaces/{ns}/{resource}/... is a resource inside the namespace; namespaces/{ns}[/status|/finalize]
    // is the namespace object itself (resource "namespaces", name {ns}).
    if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2] ?? "")) parts = parts.slice(2);
  }

  // parts: resource[/name[/subresource[/anything the subresource interprets]]]
  attributes.resource = parts[0] ?? "";
  attributes.name = parts[1] ?? "";
  if (parts.length >= 3 && attributes.verb !== "proxy") attributes.subresource = parts[2] ?? "";
  refineVerb(attributes, query, path, options);
  return attributes;
}

/**
 * True for discovery paths every caller may read: `/api`, `/api/{version}`, `/apis`, `/apis/{group}`,
 * `/apis/{group}/{version}`, `/version`, `/openapi` and below. `path` is the raw path without query;
 * a path that requestAttributes would refuse is never discovery.
 */
export function isDiscoveryPath(path: string): boolean {
  let segments: string[];
  try {
    segments = parsePath(path).segments;
  } catch {
    return false;
  }
  switch (segments[0]) {
    case "api":
      return segments.length <= 2;
    case "apis":
      return segments.length <= 3;
    case "version":
      return segments.length === 1;
    case "openapi":
      return true;
    default:
      return false;
  }
}

/** Resources that are never namespaced, so a request without a namespace is not "in all namespaces". */
const CLUSTER_SCOPED_RESOURCES: ReadonlySet<string> = new Set([
  "namespaces",
  "nodes",
  "persistentvolumes",
  "componentstatuses",
  "clusterroles",
  "clusterrolebindings",
  "customresourcedefinitions",
  "apiservices",
  "storageclasses",
  "csidrivers",
  "csinodes",
  "volumeattachments",
  "priorityclasses",
  "runtimeclasses",
  "ingressclasses",
  "certificatesigningrequests",
  "mutatingwebhookconfigurations",
  "validatingwebhookconfigurations",
  "validatingadmissionpolicies",
  "validatingadmissionpolicybindings",
  "flowschemas",
  "prioritylevelconfigurations",
  "tokenreviews",
  "subjectaccessreviews",
  "selfsubjectaccessreviews",
  "selfsubjectrulesreviews",
  "selfsubjectreviews",
  "users",
  "groups",
  "clusters",
  "passes",
]);

const COLLECTION_VERBS: ReadonlySet<string> = new Set(["list", "watch", "deletecollection"]);

/**
 * One human phrase for 403 messages, e.g. `create pods/exec "web-0" in namespace "team-a"`,
 * `list deployments.apps in all namespaces`, `get path "/healthz"`.
 */
export function describeAttributes(a: RequestAttributes): string {
  const verb = a.verb === "" ? "(unknown verb)" : a.verb;
  if (!a.isResourceRequest) return `${verb} path ${JSON.stringify(a.path)}`;
  let what = a.resource;
  if (a.apiGroup !== "") what += "." + a.apiGroup;
  if (a.subresource !== "") what += "/" + a.subresource;
  let phrase = `${verb} ${what}`;
  if (a.name !== "") phrase += ` ${JSON.stringify(a.name)}`;
  if (a.namespace !== "") {
    const isTheNamespaceItself = a.resource === "namespaces" && a.name === a.namespace;
    if (!isTheNamespaceItself) phrase += ` in namespace ${JSON.stringify(a.namespace)}`;
  } else if (COLLECTION_VERBS.has(a.verb) && !CLUSTER_SCOPED_RESOURCES.has(a.resource)) {
    phrase += " in all namespaces";
  }
  return phrase;
}
