import { forbidden } from "../api/status.ts";
import type { ClusterTransport } from "./cluster-transport.ts";

/** Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus Host. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"]);

/** Headers through which a caller could claim an identity; never forwarded from a client. */
function isIdentityHeader(name: string): boolean {
  return name === "authorization" || name.startsWith("impersonate-") || name.startsWith("x-remote-") || name.startsWith("x-forwarded-");
}

export interface ImpersonationHeaders {
  user: string;
  groups: string[];
}

/**
 * The one place where a client's headers become a cluster's: identity headers dropped, the
 * cluster's own credential added, impersonation added when configured. `keepUpgrade` keeps the
 * Connection/Upgrade pair an upgrade request needs.
 */
export function upstreamHeaders(client: Headers, transport: ClusterTransport, impersonate: ImpersonationHeaders | undefined, options: { keepUpgrade?: boolean } = {}): Headers {
  const out = new Headers();
  const connection = client.get("connection");
  const connectionTokens = connection ? connection.toLowerCase().split(",").map((t) => t.trim()) : undefined;
  // Headers iterates names in lower case.
  for (const [name, value] of client) {
    if (isIdentityHeader(name) || HOP_BY_HOP.has(name) || connectionTokens?.includes(name)) continue;
    out.append(name, value);
  }
  if (options.keepUpgrade) {
    out.set("connection", "Upgrade");
    const upgrade = client.get("upgrade");
    if (upgrade) out.set("upgrade", upgrade);
  }
  if (transport.bearerToken) out.set("authorization", `Bearer ${transport.bearerToken}`);
  if (impersonate) {
    out.set("impersonate-user", impersonate.user);
    for (const group of impersonate.groups) out.append("impersonate-group", group);
  }
  assertClean(out, transport, impersonate);
  return out;
}

/** Fail closed: the outgoing set must carry exactly the identity kpass chose, nothing else. */
function assertClean(headers: Headers, transport: ClusterTransport, impersonate: ImpersonationHeaders | undefined): void {
  const authorization = headers.get("authorization");
  if (authorization !== null && authorization !== `Bearer ${transport.bearerToken}`) throw forbidden("refusing to forward a request with a client Authorization header");
  if (!impersonate && headers.has("impersonate-user")) throw forbidden("refusing to forward a request with a client Impersonate-User header");
  for (const name of headers.keys()) {
    if (name.startsWith("impersonate-") ? name !== "impersonate-user" && name !== "impersonate-group" : name.startsWith("x-remote-") || name.startsWith("x-forwarded-")) {
      throw forbidden(`refusing to forward a request with a client ${name} header`);
    }
  }
}
