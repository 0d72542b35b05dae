/**
 * The self reviews on kpass's own API (`kubectl auth whoami|can-i --context kpass`), answered
 * from the pass itself with the rules auth/kpass-access.ts derives from its decisions.
 */
import type { Identity } from "../auth/identity.ts";
import { kpassRules } from "../auth/kpass-access.ts";
import { rulesAllow } from "../auth/policy-rules.ts";
import { readReviewSpec } from "../auth/review-body.ts";
import { reviewedAttributes } from "../auth/self-review.ts";
import type { Cluster } from "../core/cluster.ts";
import { badRequest, methodNotAllowed } from "../core/status.ts";
import type { ObjectStore } from "../store/object-store.ts";
import { readBodyBytes } from "./body.ts";

const ROUTE = /^\/apis\/(authentication\.k8s\.io\/(?:v1|v1beta1|v1alpha1)\/selfsubjectreviews|authorization\.k8s\.io\/(?:v1|v1beta1)\/(?:selfsubjectaccessreviews|selfsubjectrulesreviews))$/;

function created(apiVersion: string, kind: string, spec: unknown, status: unknown): Response {
  return Response.json({ kind, apiVersion, metadata: { creationTimestamp: null }, ...(spec === undefined ? {} : { spec }), status }, { status: 201 });
}

export class SelfReviews {
  constructor(private readonly clusters: ObjectStore<Cluster>) {}

  private rules(identity: Identity) {
    return kpassRules(identity, this.clusters.list().filter((c) => identity.reachesCluster(c)).map((c) => c.metadata.name));
  }

  /** Serves a self review; undefined for any other path. */
  async route(req: Request, identity: Identity, path: string): Promise<Response | undefined> {
    const m = ROUTE.exec(path);
    if (!m) return undefined;
    if (req.method !== "POST") throw methodNotAllowed(req.method, path);
    const apiVersion = m[1]!.slice(0, m[1]!.lastIndexOf("/"));
    if (path.endsWith("/selfsubjectreviews")) {
      const userInfo = { username: identity.user, uid: identity.passUid, groups: [...identity.groups, "system:authenticated"], extra: { "kpass.dev/pass": [identity.pass] } };
      return created(apiVersion, "SelfSubjectReview", undefined, { userInfo });
    }
    const kind = path.endsWith("/selfsubjectaccessreviews") ? "access" : "rules";
    const spec = readReviewSpec(kind, req.headers.get("content-type"), await readBodyBytes(req));
    if (kind === "access") {
      const asked = reviewedAttributes(spec);
      if (!asked) throw badRequest("spec.resourceAttributes or spec.nonResourceAttributes is required");
      const allowed = rulesAllow(this.rules(identity), asked);
      return created(apiVersion, "SelfSubjectAccessReview", spec, allowed ? { allowed } : { allowed, reason: `the pass ${JSON.stringify(identity.pass)} does not allow it on kpass` });
    }
    const rules = this.rules(identity);
    const resourceRules = rules.filter((r) => r.resources).map(({ verbs, apiGroups, resources, resourceNames }) => (resourceNames ? { verbs, apiGroups, resources, resourceNames } : { verbs, apiGroups, resources }));
    const nonResourceRules = rules.filter((r) => r.nonResourceURLs).map(({ verbs, nonResourceURLs }) => ({ verbs, nonResourceURLs }));
    return created(apiVersion, "SelfSubjectRulesReview", spec, { resourceRules, nonResourceRules, incomplete: false });
  }
}
