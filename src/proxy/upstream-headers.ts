import type { ImpersonationHeaders } from "../auth/identity.ts";
import { forbiddenMessage } from "../core/status.ts";
import type { ClusterTransport } from "./cluster-transport.ts";

/**
 * The client headers a cluster may see: what kubectl, client-go and the client libraries send.
 * An allowlist, because clusters behind an auth proxy trust headers (Cookie, Forwarded,
 * X-Remote-User, Remote-User, X-Auth-Request-*, X-Client-Cert, underscore spellings, …) that no
 * list of known-bad names can keep complete.
 */
const FORWARDED = new Set([
  "accept",
  "accept-encoding",
  "accept-language",
  "audit-id",
  "cache-control",
  "content-encoding",
  "content-type",
  "if-match",
  "if-modified-since",
  "if-none-match",
  "if-unmodified-since",
  "pragma",
  "traceparent",
  "tracestate",
  "user-agent",
  "x-stream-protocol-version",
  "sec-websocket-extensions",
  "sec-websocket-key",
  "sec-websocket-protocol",
  "sec-websocket-version",
]);

function isForwarded(name: string): boolean {
  return FORWARDED.has(name) || name.startsWith("kubectl-");
}

const TOKEN_BYTE = /^[!#$&'*+\-.^_`|~0-9a-z]$/;

/**
 * An extra key as the header-name suffix client-go writes (transport.headerKeyEscape): bytes that are
 * not token characters, "%" and, unlike client-go, upper-case letters percent-encoded, since
 * kube-apiserver lower-cases the name before decoding it. The result is all lower case.
 */
export function escapeExtraKey(key: string): string {
  let out = "";
  for (const byte of Buffer.from(key, "utf8")) {
    const c = String.fromCharCode(byte);
    // Lower-case hex: header names are case-insensitive and Headers lower-cases them.
    out += TOKEN_BYTE.test(c) ? c : `%${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/**
 * The impersonation header lines for the cluster, one line per group and per extra value, as
 * kube-apiserver reads them (it never splits a header value on commas). A Headers object joins
 * repeated names with ", ", so a writer that can emit repeated lines should use these.
 */
export function impersonationHeaderLines(impersonate: ImpersonationHeaders): [string, string][] {
  const lines: [string, string][] = [["impersonate-user", impersonate.user]];
  for (const group of impersonate.groups) lines.push(["impersonate-group", group]);
  if (impersonate.uid !== undefined) lines.push(["impersonate-uid", impersonate.uid]);
  for (const [key, values] of Object.entries(impersonate.extra ?? {})) {
    for (const value of values) lines.push([`impersonate-extra-${escapeExtraKey(key)}`, value]);
  }
  return lines;
}

/** The lower-cased tokens of a Connection header value (repeated lines joined with commas). */
export function connectionTokensOf(value: string | null): string[] {
  return value ? value.toLowerCase().split(",").map((t) => t.trim()).filter(Boolean) : [];
}

/** The lower-cased tokens of the Connection header. */
export function connectionTokens(headers: Headers): string[] {
  return connectionTokensOf(headers.get("connection"));
}

/**
 * The cluster's credential as a Headers object to copy from, one per transport and token: a
 * Headers value is validated byte by byte when set, ~1 µs for a service-account JWT on every
 * request, while a copy of an existing Headers is not revalidated.
 */
const credentialTemplates = new WeakMap<ClusterTransport, { token: string | undefined; headers: Headers }>();

function credentialTemplate(transport: ClusterTransport): Headers {
  const cached = credentialTemplates.get(transport);
  if (cached && cached.token === transport.bearerToken) return cached.headers;
  const headers = new Headers();
  if (transport.bearerToken) headers.set("authorization", `Bearer ${transport.bearerToken}`);
  credentialTemplates.set(transport, { token: transport.bearerToken, headers });
  return headers;
}

/**
 * The one place where a client's headers become a cluster's: identity headers dropped, the
 * cluster's own credential added, impersonation added when configured. `keepUpgrade` keeps the
 * Connection/Upgrade pair an upgrade request needs.
 */
export function upstreamHeaders(client: Headers, transport: ClusterTransport, impersonate: ImpersonationHeaders | undefined, options: { keepUpgrade?: boolean; rawHeaders?: readonly (readonly [string, string])[] } = {}): Headers {
  // Never written to: every request gets its own copy. Client lines cannot replace the
  // credential, since Authorization is not on the allowlist (and assertClean checks it).
  const out = new Headers(credentialTemplate(transport));
  const hopByHop = connectionTokens(client);
  const raw = options.rawHeaders;
  if (raw) {
    // The lines `client` was built from, in the order sent; appending them one by one joins
    // repeated names exactly as `client` did, without iterating (and sorting) it.
    for (const [rawName, value] of raw) {
      const name = rawName.toLowerCase();
      if (!isForwarded(name) || hopByHop.includes(name)) continue;
      out.append(name, value);
    }
  } else {
    // Headers iterates names in lower case.
    for (const [name, value] of client) {
      if (!isForwarded(name) || hopByHop.includes(name)) continue;
      out.append(name, value);
    }
  }
  if (options.keepUpgrade) {
    out.set("connection", "Upgrade");
    const upgrade = client.get("upgrade");
    if (upgrade) out.set("upgrade", upgrade);
  }
  if (impersonate) for (const [name, value] of impersonationHeaderLines(impersonate)) out.append(name, value);
  assertClean(out, transport, impersonate);
  return out;
}

const NONE: ReadonlySet<string> = new Set();

/** Fail closed: the outgoing set must carry exactly the identity kpass chose, nothing else. */
function assertClean(headers: Headers, transport: ClusterTransport, impersonate: ImpersonationHeaders | undefined): void {
  const authorization = headers.get("authorization");
  if (authorization !== null && authorization !== `Bearer ${transport.bearerToken}`) throw forbiddenMessage("refusing to forward a request with a client Authorization header");
  if (!impersonate && headers.has("impersonate-user")) throw forbiddenMessage("refusing to forward a request with a client Impersonate-User header");
  const chosen: ReadonlySet<string> = impersonate ? new Set(impersonationHeaderLines(impersonate).map(([name]) => name.toLowerCase())) : NONE;
  for (const name of headers.keys()) {
    if (name.startsWith("impersonate-") ? !chosen.has(name) : name.startsWith("x-remote-") || name.startsWith("x-forwarded-")) {
      throw forbiddenMessage(`refusing to forward a request with a client ${name} header`);
    }
  }
}
