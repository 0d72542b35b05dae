import { createPrivateKey, X509Certificate } from "node:crypto";
import { type StoredObject, isDnsSubdomain } from "../../core/object.ts";
import { objectSchema, type FieldProblem, type Schema } from "../schema.ts";
import type { KindDefinition } from "../kind.ts";
import { humanAge } from "../../core/duration.ts";
import type { Cluster, ClusterAccess, Condition } from "../../core/cluster.ts";

const specSchema: Schema = {
  type: "object",
  required: ["access"],
  properties: {
    access: {
      type: "object",
      required: ["endpoint", "credential"],
      properties: {
        endpoint: { type: "string", description: "https:// URL of the cluster's API server" },
        caBundle: { type: "string", format: "byte", description: "base64 PEM CA bundle that signs the API server's certificate" },
        insecure: { type: "boolean", description: "skip TLS verification of the cluster (explicit only)" },
        tlsServerName: { type: "string", description: "server name to verify instead of the endpoint's host" },
        proxyURL: { type: "string", description: "HTTP(S) proxy to reach the cluster through" },
        credential: {
          type: "object",
          required: ["type"],
          properties: {
            type: { type: "string", enum: ["ServiceAccountToken", "X509Certificate"] },
            serviceAccountToken: { type: "string" },
            x509: {
              type: "object",
              properties: {
                certificate: { type: "string", format: "byte" },
                privateKey: { type: "string", format: "byte" },
              },
            },
          },
        },
      },
    },
    impersonation: { type: "string", enum: ["none", "user"] },
  },
};

const statusSchema: Schema = {
  type: "object",
  properties: {
    conditions: {
      type: "array",
      items: {
        type: "object",
        properties: {
          type: { type: "string" },
          status: { type: "string" },
          reason: { type: "string" },
          message: { type: "string" },
          lastTransitionTime: { type: "string", format: "date-time" },
        },
      },
    },
    version: { type: "string" },
    platform: { type: "string" },
    lastProbeTime: { type: "string", format: "date-time" },
    observedGeneration: { type: "integer" },
  },
};

function decodeBase64(value: string): string | undefined {
  const compact = value.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) return undefined;
  return Buffer.from(compact, "base64").toString("utf8");
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Parses every certificate of a base64 PEM bundle; an error message if any does not parse. */
function checkCertificates(value: string): string | undefined {
  const pem = decodeBase64(value);
  if (pem === undefined) return "must be base64-encoded PEM";
  const blocks = pem.match(PEM_CERTIFICATE);
  if (!blocks) return "must contain at least one PEM CERTIFICATE block";
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (error) {
      return `certificate does not parse: ${(error as Error).message}`;
    }
  }
  return undefined;
}

function checkPrivateKey(value: string): string | undefined {
  const pem = decodeBase64(value);
  if (pem === undefined) return "must be base64-encoded PEM";
  try {
    createPrivateKey(pem);
    return undefined;
  } catch {
    return "must be a PEM private key (PKCS#1, PKCS#8 or SEC1)";
  }
}

function validateEndpoint(endpoint: string, at: string): FieldProblem[] {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return [{ field: at, message: `must be an absolute https:// URL, got "${endpoint}"` }];
  }
  if (url.protocol !== "https:") return [{ field: at, message: `must use https://, got "${url.protocol}//"` }];
  if (url.username || url.password) return [{ field: at, message: "must not contain user information" }];
  if (url.search || url.hash) return [{ field: at, message: "must not contain a query or fragment" }];
  return [];
}

function validateAccess(access: ClusterAccess): FieldProblem[] {
  const at = "spec.access";
  const problems = validateEndpoint(access.endpoint, `${at}.endpoint`);
  if (access.caBundle) {
    const problem = checkCertificates(access.caBundle);
    if (problem) problems.push({ field: `${at}.caBundle`, message: problem });
    if (access.insecure) problems.push({ field: `${at}.insecure`, message: "must not be true when caBundle is set" });
  }
  // Host names compare case-insensitively.
  if (access.tlsServerName && !isDnsSubdomain(access.tlsServerName.toLowerCase())) {
    problems.push({ field: `${at}.tlsServerName`, message: "must be a DNS name" });
  }
  if (access.proxyURL) {
    try {
      const proxy = new URL(access.proxyURL);
      if (proxy.protocol !== "http:" && proxy.protocol !== "https:") problems.push({ field: `${at}.proxyURL`, message: "must be an http:// or https:// URL" });
      // A password here would be shown to everyone who may read the Cluster (credential is the only redacted part).
      if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(access.proxyURL) || proxy.username || proxy.password) {
        problems.push({ field: `${at}.proxyURL`, message: "must not contain user information (user:password@): credentials belong in spec.access.credential" });
      }
    } catch {
      problems.push({ field: `${at}.proxyURL`, message: "must be an absolute URL" });
    }
  }
  const credential = access.credential;
  if (credential.type === "ServiceAccountToken") {
    const token = credential.serviceAccountToken;
    if (!token) problems.push({ field: `${at}.credential.serviceAccountToken`, message: "Required value: a token is required for credential type ServiceAccountToken" });
    else if (!/^[\x21-\x7e]+$/.test(token)) problems.push({ field: `${at}.credential.serviceAccountToken`, message: "must be printable ASCII without spaces" });
  } else if (credential.type === "X509Certificate") {
    const x509 = credential.x509;
    if (!x509?.certificate) problems.push({ field: `${at}.credential.x509.certificate`, message: "Required value: required for credential type X509Certificate" });
    else {
      const problem = checkCertificates(x509.certificate);
      if (problem) problems.push({ field: `${at}.credential.x509.certificate`, message: problem });
    }
    if (!x509?.privateKey) problems.push({ field: `${at}.credential.x509.privateKey`, message: "Required value: required for credential type X509Certificate" });
    else {
      const problem = checkPrivateKey(x509.privateKey);
      if (problem) problems.push({ field: `${at}.credential.x509.privateKey`, message: problem });
    }
  }
  return problems;
}

function readyCondition(cluster: Cluster): Condition | undefined {
  return cluster.status?.conditions?.find((c) => c.type === "Ready");
}

export const clusterKind: KindDefinition<Cluster> = {
  kind: "Cluster",
  listKind: "ClusterList",
  plural: "clusters",
  singular: "cluster",
  shortNames: ["kc"],
  subresources: ["status", "proxy"],
  schema: objectSchema(specSchema, statusSchema),
  validate(cluster) {
    const access = cluster.spec?.access;
    if (!access) return [{ field: "spec.access", message: "Required value" }];
    if (!access.endpoint) return [{ field: "spec.access.endpoint", message: "Required value" }];
    if (!access.credential?.type) return [{ field: "spec.access.credential.type", message: "Required value: one of ServiceAccountToken, X509Certificate" }];
    return validateAccess(access);
  },
  normalize(cluster) {
    const endpoint = cluster.spec.access.endpoint.replace(/\/+$/, "");
    return { ...cluster, spec: { ...cluster.spec, access: { ...cluster.spec.access, endpoint } } };
  },
  columns: [
    { name: "Name", type: "string", format: "name", description: "Name of the cluster" },
    { name: "Endpoint", type: "string", description: "API server URL" },
    { name: "Ready", type: "string", description: "Whether the last probe reached the cluster" },
    { name: "Version", type: "string", description: "Kubernetes version reported by the cluster" },
    { name: "Age", type: "string", description: "Time since creation" },
  ],
  row(cluster, now) {
    return [
      cluster.metadata.name,
      cluster.spec.access.endpoint,
      readyCondition(cluster)?.status ?? "Unknown",
      cluster.status?.version ?? "",
      humanAge(cluster.metadata.creationTimestamp, now),
    ];
  },
  redact(cluster: Cluster): Cluster {
    const { credential: _hidden, ...access } = cluster.spec.access;
    return { ...cluster, spec: { ...cluster.spec, access: access as ClusterAccess } };
  },
};
