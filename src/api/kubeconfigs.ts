/** `passes/{name}/kubeconfig`: a kubeconfig with one context for kpass and one per cluster the pass reaches. */
import type { Authenticator } from "../auth/authenticate.ts";
import type { Identity } from "../auth/identity.ts";
import { authorizeKubeconfig } from "../auth/kpass-access.ts";
import { buildKubeconfig } from "../auth/kubeconfig.ts";
import type { TokenService } from "../auth/tokens.ts";
import { PASSES, decodePathSegment, passSubresourceName } from "../core/api-group.ts";
import type { Cluster } from "../core/cluster.ts";
import type { Pass } from "../core/pass.ts";
import { badRequest, methodNotAllowed, notFound } from "../core/status.ts";
import type { ObjectStore } from "../store/object-store.ts";

export interface KubeconfigDeps {
  tokens: TokenService;
  authenticator: Authenticator;
  passes: ObjectStore<Pass>;
  clusters: ObjectStore<Cluster>;
  caPem: string;
  /** https://host:port of kpass as its users reach it (known once the edge listens). */
  serverUrl(): string;
}


export class Kubeconfigs {
  constructor(private readonly deps: KubeconfigDeps) {}

  /** A fresh token for `pass` and the kubeconfig around it (no credential at all with `withToken: false`). */
  async forPass(pass: Pass, currentContext?: string, withToken = true): Promise<string> {
    const { deps } = this;
    const token = withToken ? await deps.tokens.mint(pass.metadata.name, pass.metadata.uid) : undefined;
    const identity = deps.authenticator.identityFor(pass);
    const clusters = deps.clusters.list().filter((c) => identity.reachesCluster(c));
    return buildKubeconfig({ serverUrl: deps.serverUrl(), caPem: deps.caPem, passName: pass.metadata.name, token, clusters, currentContext });
  }

  /** Serves the kubeconfig route; undefined for any other path. */
  async route(req: Request, identity: Identity, path: string): Promise<Response | undefined> {
    const encoded = passSubresourceName(path, "kubeconfig");
    if (encoded === undefined) return undefined;
    if (req.method !== "GET") throw methodNotAllowed(req.method, path);
    const name = decodePathSegment(encoded);
    authorizeKubeconfig(identity, name);
    const pass = this.deps.passes.get(name);
    if (!pass) throw notFound(PASSES, name);
    const query = new URL(req.url).searchParams;
    const context = query.get("context") ?? undefined;
    // ?credential=none: the user entry is left empty, for a client certificate the caller adds (kpass keeps no private key).
    const credential = query.get("credential") ?? "token";
    if (credential !== "token" && credential !== "none") throw badRequest(`credential must be "token" or "none", not ${JSON.stringify(credential.slice(0, 64))}`);
    return new Response(await this.forPass(pass, context, credential === "token"), { headers: { "content-type": "application/yaml" } });
  }
}
