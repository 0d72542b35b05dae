/** The Cluster object: how kpass reaches one Kubernetes cluster and what it last saw of it. */
import type { StoredObject } from "./object.ts";

export type CredentialType = "ServiceAccountToken" | "X509Certificate";

export interface ClusterAccess {
  endpoint: string;
  /** base64 of one or more PEM certificates. */
  caBundle?: string;
  insecure?: boolean;
  tlsServerName?: string;
  proxyURL?: string;
  credential: {
    type: CredentialType;
    serviceAccountToken?: string;
    x509?: { certificate: string; privateKey: string };
  };
}

export interface ClusterSpec {
  access: ClusterAccess;
  /** `user`: requests carry Impersonate-User/Group of the caller's pass. */
  impersonation?: "none" | "user";
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface ClusterStatus {
  conditions?: Condition[];
  version?: string;
  platform?: string;
  lastProbeTime?: string;
  observedGeneration?: number;
}

export interface Cluster extends StoredObject {
  spec: ClusterSpec;
  status?: ClusterStatus;
}
