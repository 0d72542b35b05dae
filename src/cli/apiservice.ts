/**
 * `kpass apiservice`: what a host kube-apiserver needs to aggregate kpass — the APIService
 * v1beta1.cluster.kpass.dev (caBundle: kpass's serving CA), the Service it points at, and the
 * RBAC kpass needs on the host as every extension API server does: read
 * kube-system/extension-apiserver-authentication (RoleBinding to extension-apiserver-authentication-reader)
 * and create TokenReviews and SubjectAccessReviews (ClusterRoleBinding to system:auth-delegator).
 */
import { stringify } from "yaml";
import { GROUP, VERSION } from "../core/api-group.ts";

export interface ApiServiceOptions {
  caPem: string;
  serviceNamespace: string;
  serviceName: string;
  /** The Service's port (the aggregator dials it). */
  servicePort: number;
  /** kpass's listen port behind the Service. */
  targetPort: number;
  /** Who kpass is on the host: a service account (default, `serviceNamespace/serviceName`) or a user of its host kubeconfig. */
  user?: string;
}

export function apiServiceManifests(o: ApiServiceOptions): string {
  const subject = o.user !== undefined
    ? { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: o.user }
    : { kind: "ServiceAccount", name: o.serviceName, namespace: o.serviceNamespace };
  const labels = { "app.kubernetes.io/name": "kpass" };
  const docs: unknown[] = [
    {
      apiVersion: "apiregistration.k8s.io/v1",
      kind: "APIService",
      metadata: { name: `${VERSION}.${GROUP}`, labels },
      spec: {
        group: GROUP,
        version: VERSION,
        service: { namespace: o.serviceNamespace, name: o.serviceName, port: o.servicePort },
        caBundle: Buffer.from(o.caPem).toString("base64"),
        groupPriorityMinimum: 1000,
        versionPriority: 15,
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { namespace: o.serviceNamespace, name: o.serviceName, labels },
      spec: { selector: labels, ports: [{ name: "https", port: o.servicePort, targetPort: o.targetPort, protocol: "TCP" }] },
    },
    ...(o.user === undefined ? [{ apiVersion: "v1", kind: "ServiceAccount", metadata: { namespace: o.serviceNamespace, name: o.serviceName, labels } }] : []),
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { namespace: "kube-system", name: `${o.serviceName}:extension-apiserver-authentication-reader`, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "extension-apiserver-authentication-reader" },
      subjects: [subject],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: `${o.serviceName}:system:auth-delegator`, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:auth-delegator" },
      subjects: [subject],
    },
  ];
  return docs.map((doc) => stringify(doc, { aliasDuplicateObjects: false })).join("---\n");
}
