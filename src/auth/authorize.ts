import { CLUSTERS, GROUP, VERSION } from "../core/api-group.ts";
import { badRequest, forbiddenMessage, notFound } from "../core/status.ts";
import { forbiddenRequest } from "./forbidden.ts";
import { isSelfReview } from "./self-review.ts";
import type { ImpersonationHeaders } from "./identity.ts";
import type { Identity } from "./identity.ts";
import { rulesAllow } from "./policy-rules.ts";
import { isDiscoveryPath, PathError, requestAttributes, type RequestAttributes } from "./request-attributes.ts";
import type { Cluster } from "../core/cluster.ts";

/** What authorization reads of a request to a cluster. */
export interface ProxyRequest {
  method: string;
  path: string;
  search: string;
  headers: Headers;
  /** Header lines as sent, repeated ones separate; absent when only merged headers are known. */
  rawHeaders?: readonly (readonly [string, string])[];
  upgrade: boolean;
  /** Set once the host allowed a delegated identity's request (authorizeDelegatedProxy). */
  hostAllowed?: boolean;
}

export interface ProxyDecision {
  attributes: RequestAttributes;
  /** Identity headers kpass itself adds toward the cluster, if any. */
  impersonate?: ImpersonationHeaders;
}

function passOn(identity: Identity, cluster: string): string {
  return `the pass ${JSON.stringify(identity.pass)} on cluster ${JSON.stringify(cluster)}`;
}

function parseAttributes(method: string, path: string, search: string, upgrade: boolean): RequestAttributes {
  try {
    return requestAttributes(method, path, new URLSearchParams(search), { upgrade });
  } catch (error) {
    if (error instanceof PathError) throw badRequest(`invalid request path: ${error.message}`);
    throw error;
  }
}

const SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:";
const EXTRA_PREFIX = "impersonate-extra-";
const KNOWN_IMPERSONATION_HEADERS: ReadonlySet<string> = new Set(["impersonate-user", "impersonate-group", "impersonate-uid"]);
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * `system:serviceaccount:NS:NAME` split as Kubernetes' serviceaccount.SplitUsername does: exactly two
 * parts, a namespace (DNS label) and a name (DNS subdomain). Anything else is an ordinary user name.
 */
export function splitServiceAccountUsername(user: string): { namespace: string; name: string } | undefined {
  if (!user.startsWith(SERVICE_ACCOUNT_PREFIX)) return undefined;
  const parts = user.slice(SERVICE_ACCOUNT_PREFIX.length).split(":");
  if (parts.length !== 2) return undefined;
  const [namespace = "", name = ""] = parts;
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) return undefined;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) return undefined;
  return { namespace, name };
}

/**
 * An Impersonate-Extra-* key as kube-apiserver reads it: the lower-cased header name after the
 * prefix, percent-decoded (Go's url.PathUnescape), or left as it is when the escapes are malformed.
 * Undefined when the decoded bytes are not UTF-8, which kpass could not check faithfully.
 */
function unescapeExtraKey(encoded: string): string | undefined {
  if (!encoded.includes("%")) return encoded;
  if (/%(?![0-9a-fA-F]{2})/.test(encoded)) return encoded;
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    if (encoded[i] === "%") {
      bytes.push(parseInt(encoded.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const b of Buffer.from(encoded[i]!, "utf8")) bytes.push(b);
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

function attributes(apiGroup: string, resource: string, subresource: string, namespace: string, name: string): RequestAttributes {
  return { isResourceRequest: true, verb: "impersonate", apiGroup, apiVersion: "v1", resource, subresource, namespace, name, path: "" };
}

/** One authorization kube-apiserver's impersonation filter makes, with the words kpass refuses it in. */
interface ImpersonationCheck {
  attributes: RequestAttributes;
  what: string;
}

/**
 * The checks kube-apiserver's impersonation filter (WithImpersonation) makes for these headers, in
 * its order: the user (`users`, or `serviceaccounts` named NAME in namespace NS for
 * `system:serviceaccount:NS:NAME`), each group (`groups`), each extra value (`userextras/KEY` in
 * authentication.k8s.io), the uid (`uids` in authentication.k8s.io). All with verb `impersonate`.
 */
export function impersonationChecks(asked: ImpersonationHeaders): ImpersonationCheck[] {
  const checks: ImpersonationCheck[] = [];
  const sa = splitServiceAccountUsername(asked.user);
  if (sa) checks.push({ attributes: attributes("", "serviceaccounts", "", sa.namespace, sa.name), what: `service account "${sa.name}" in namespace "${sa.namespace}"` });
  else checks.push({ attributes: attributes("", "users", "", "", asked.user), what: `user "${asked.user}"` });
  for (const group of asked.groups) checks.push({ attributes: attributes("", "groups", "", "", group), what: `group "${group}"` });
  for (const [key, values] of Object.entries(asked.extra ?? {})) {
    for (const value of values) checks.push({ attributes: attributes("authentication.k8s.io", "userextras", key, "", value), what: `extra "${key}"="${value}"` });
  }
  if (asked.uid !== undefined) checks.push({ attributes: attributes("authentication.k8s.io", "uids", "", "", asked.uid), what: `uid "${asked.uid}"` });
  return checks;
}

/**
 * The values of a repeatable header, one per header line as Go's http.Header keeps them (a group
 * name may contain commas). Without the raw lines, the joined value is split on ", " — the best a
 * merged Headers object can tell. An empty value is refused.
 */
function headerValues(name: string, headers: Headers, rawHeaders: readonly (readonly [string, string])[] | undefined, label: string): string[] {
  let values: string[];
  if (rawHeaders) values = rawHeaders.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v.trim());
  else {
    const joined = headers.get(name);
    values = joined === null ? [] : joined.split(",").map((v) => v.trim());
  }
  if (values.some((v) => v === "")) throw badRequest(`${label} has an empty value`);
  return values;
}

/**
 * The identity a client asks for with Impersonate-* headers, read as kube-apiserver reads them;
 * undefined when it asks for none. Throws 400 for what kube-apiserver would also refuse (groups, extras
 * or a uid without a user) and 403 for Impersonate-* headers Kubernetes does not define.
 */
export function parseImpersonationHeaders(headers: Headers, rawHeaders?: readonly (readonly [string, string])[]): ImpersonationHeaders | undefined {
  // The raw lines are the ones `headers` was built from: with no Impersonate-* line among them
  // the answer is "none", without walking the Headers object (which sorts on every iteration).
  if (rawHeaders && !rawHeaders.some(([name]) => name.length > 11 && (name.charCodeAt(0) | 32) === 105 && name.slice(0, 12).toLowerCase() === "impersonate-")) return undefined;
  const user = headers.get("impersonate-user") ?? "";
  const uid = headers.get("impersonate-uid") ?? "";
  const extra: Record<string, string[]> = {};
  const unknown: string[] = [];
  for (const [name, value] of headers) {
    if (!name.startsWith("impersonate-") || KNOWN_IMPERSONATION_HEADERS.has(name)) continue;
    if (!name.startsWith(EXTRA_PREFIX)) {
      unknown.push(name);
      continue;
    }
    const encoded = name.slice(EXTRA_PREFIX.length);
    const key = unescapeExtraKey(encoded);
    if (encoded === "" || key === undefined || key === "") throw badRequest(`header ${name} does not name an extra key kpass can check`);
    (extra[key] ??= []).push(...headerValues(name, headers, rawHeaders, name));
  }
  if (unknown.length > 0) throw forbiddenMessage(`kpass does not forward the impersonation header(s) ${unknown.join(", ")}`);
  const groups = headerValues("impersonate-group", headers, rawHeaders, "Impersonate-Group");
  const hasExtra = Object.keys(extra).length > 0;
  if (user === "") {
    if (groups.length > 0 || hasExtra || uid !== "") throw badRequest(`requested ${describeWithoutUser(groups, extra, uid)} without impersonating a user`);
    return undefined;
  }
  const asked: ImpersonationHeaders = { user, groups };
  if (uid !== "") asked.uid = uid;
  if (hasExtra) asked.extra = extra;
  return asked;
}

/** What kube-apiserver lists when groups, extras or a uid come without a user. */
function describeWithoutUser(groups: string[], extra: Record<string, string[]>, uid: string): string {
  const parts = groups.map((g) => `group ${JSON.stringify(g)}`);
  for (const [key, values] of Object.entries(extra)) for (const v of values) parts.push(`user-extra ${JSON.stringify(key)}=${JSON.stringify(v)}`);
  if (uid !== "") parts.push(`uid ${JSON.stringify(uid)}`);
  return `impersonation of ${parts.join(", ")}`;
}

/**
 * A client's own `--as`/`--as-group`/`--as-uid`/`--as-user-extra`, honoured only where the pass has an
 * impersonate rule for every part of it, exactly as kube-apiserver would require of the pass's user.
 */
function requestedImpersonation(identity: Identity, request: ProxyRequest, clusterName: string): ImpersonationHeaders | undefined {
  const asked = parseImpersonationHeaders(request.headers, request.rawHeaders);
  if (!asked) return undefined;
  for (const check of impersonationChecks(asked)) {
    if (!rulesAllow(identity.rules, check.attributes)) {
      throw forbiddenRequest(identity.user, check.attributes, `${passOn(identity, clusterName)} has no impersonate rule for ${check.what}`);
    }
  }
  return asked;
}

/**
 * Decides whether `identity` may send this request to `cluster`, and with which identity headers.
 * Discovery of a reachable cluster is always allowed; everything else must match a pass rule.
 */
export function authorizeProxy(identity: Identity, cluster: Cluster, request: ProxyRequest): ProxyDecision {
  const name = cluster.metadata.name;
  if (identity.delegated) {
    // Fail closed: the host must have been asked (authorizeDelegatedProxy) before any plan is made.
    if (!request.hostAllowed) throw forbiddenRequest(identity.user, clusterProxyAttributes(name, "get"), "the host was not asked");
    const attributes = parseAttributes(request.method, request.path, request.search, request.upgrade);
    // The member cluster sees the host user (its Impersonate-* from the client are never forwarded:
    // the host has applied them already). A cluster set to `none` is reached with kpass's credential.
    if (cluster.spec.impersonation === "none") return { attributes };
    return { attributes, impersonate: { user: identity.user, groups: identity.groups } };
  }
  // A cluster the pass does not reach does not exist for it, as on kpass's own API.
  if (!identity.reachesCluster(cluster)) throw notFound(CLUSTERS, name);
  const attributes = parseAttributes(request.method, request.path, request.search, request.upgrade);
  // Discovery is the same for everyone, and every authenticated user may ask who they are and
  // what they may do (system:basic-user); the answers themselves are narrowed to the pass.
  const discovery = !attributes.isResourceRequest && isDiscoveryPath(attributes.path) && attributes.verb === "get";
  if (!discovery && !isSelfReview(attributes) && !rulesAllow(identity.rules, attributes)) {
    throw forbiddenRequest(identity.user, attributes, `${passOn(identity, name)} does not allow it`);
  }
  let asked: ImpersonationHeaders | undefined;
  try {
    asked = requestedImpersonation(identity, request, name);
  } catch (error) {
    // Discovery is the same for every identity: answer it as the pass itself, so that kubectl
    // reaches the real request and prints why the impersonation was refused there.
    if (!discovery) throw error;
  }
  if (asked) return { attributes, impersonate: asked };
  if (cluster.spec.impersonation === "user") return { attributes, impersonate: { user: identity.user, groups: identity.groups } };
  return { attributes };
}

/** What the host is asked for a proxied request: `<verb>` on `clusters/proxy` named after the cluster, in kpass's group. */
export function clusterProxyAttributes(cluster: string, verb: string): RequestAttributes {
  return { isResourceRequest: true, verb, apiGroup: GROUP, apiVersion: VERSION, resource: "clusters", subresource: "proxy", namespace: "", name: cluster, path: "" };
}

/**
 * A host user's request to a cluster, authorized by the host (SubjectAccessReview): the proxied
 * request's verb on `clusters/proxy` named `cluster`. Throws a kube-style 403 when it says no.
 */
export async function authorizeDelegatedProxy(identity: Identity, cluster: string, request: ProxyRequest): Promise<void> {
  if (!identity.delegated) return;
  const proxied = parseAttributes(request.method, request.path, request.search, request.upgrade);
  // A self review (can-i, whoami) needs only access to the cluster: its answer is narrowed to the
  // host's decision for the verb it asks about (proxy/self-review.ts).
  const asked = clusterProxyAttributes(cluster, isSelfReview(proxied) ? "get" : proxied.verb);
  const decision = await identity.delegated.authorize(asked);
  if (!decision.allowed) throw forbiddenRequest(identity.user, asked, decision.reason);
}
