/**
 * 403s worded as kube-apiserver's authorization filter words them, so that scripts looking for
 * `is forbidden: User "…" cannot <verb> resource "…"` read kpass's refusals the same way.
 */
import { forbidden, type ApiError } from "../core/status.ts";
import type { RequestAttributes } from "./request-attributes.ts";

/** `User "u" cannot <verb> resource "<res>[/<sub>]" in API group "<g>" in the namespace "<ns>"` / `at the cluster scope` / `cannot <verb> path "<p>"`. */
export function forbiddenPhrase(user: string, a: RequestAttributes): string {
  if (!a.isResourceRequest) return `User ${JSON.stringify(user)} cannot ${a.verb} path ${JSON.stringify(a.path)}`;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace ${JSON.stringify(a.namespace)}` : "at the cluster scope";
  return `User ${JSON.stringify(user)} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.apiGroup)} ${scope}`;
}

/** The refusal of request `a` by `user`, with kpass's reason after the colon. */
export function forbiddenRequest(user: string, a: RequestAttributes, reason: string): ApiError {
  const gr = a.isResourceRequest ? { group: a.apiGroup, resource: a.resource } : { group: "", resource: "" };
  const phrase = forbiddenPhrase(user, a);
  return forbidden(gr, a.isResourceRequest ? a.name : "", reason ? `${phrase}: ${reason}` : phrase);
}
