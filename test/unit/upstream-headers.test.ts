import { describe, expect, test } from "bun:test";
import type { ClusterTransport } from "../../src/proxy/cluster-transport.ts";
import { upstreamHeaders } from "../../src/proxy/upstream-headers.ts";

const transport = (bearerToken?: string): ClusterTransport => ({
  cluster: "c",
  endpoint: new URL("https://cluster.example:6443"),
  tls: { rejectUnauthorized: true },
  bearerToken,
  fetch: () => Promise.reject(new Error("unused")),
  pool: undefined as unknown as ClusterTransport["pool"],
  close: () => {},
});

const client = new Headers({
  Authorization: "Bearer client-token",
  "Impersonate-User": "root",
  "Impersonate-Group": "system:masters",
  "Impersonate-Extra-Scopes": "all",
  "Impersonate-Uid": "0",
  "X-Remote-User": "root",
  "X-Remote-Group": "system:masters",
  "X-Forwarded-For": "1.2.3.4",
  "X-Forwarded-Host": "evil",
  Connection: "keep-alive, X-Secret-Hop",
  "X-Secret-Hop": "drop me",
  "Keep-Alive": "timeout=5",
  "Transfer-Encoding": "chunked",
  Host: "kpass",
  Accept: "application/json",
  "User-Agent": "kubectl/v1.33",
});

describe("upstreamHeaders", () => {
  test("drops every identity and hop-by-hop header and adds the cluster's token", () => {
    const out = upstreamHeaders(client, transport("cluster-token"), undefined);
    expect(out.get("authorization")).toBe("Bearer cluster-token");
    for (const name of ["impersonate-user", "impersonate-group", "impersonate-extra-scopes", "impersonate-uid", "x-remote-user", "x-remote-group", "x-forwarded-for", "x-forwarded-host", "connection", "x-secret-hop", "keep-alive", "transfer-encoding", "host"]) {
      expect(out.has(name)).toBe(false);
    }
    expect(out.get("accept")).toBe("application/json");
    expect(out.get("user-agent")).toBe("kubectl/v1.33");
  });

  test("only allowlisted client headers leave: auth-proxy headers in any spelling never do", () => {
    const hostile = new Headers({
      Cookie: "session=1",
      Forwarded: "for=1.2.3.4",
      "X-Real-IP": "1.2.3.4",
      "X-Client-Cert": "x",
      "Remote-User": "root",
      "X-Auth-Request-User": "root",
      X_Remote_User: "root",
      Impersonate_User: "root",
      "Kubectl-Command": "kubectl get",
      "Sec-WebSocket-Protocol": "v5.channel.k8s.io",
      "Content-Type": "application/json",
    });
    const out = upstreamHeaders(hostile, transport("t"), undefined);
    expect([...out.keys()].sort()).toEqual(["authorization", "content-type", "kubectl-command", "sec-websocket-protocol"]);
  });

  test("a certificate-authenticated cluster gets no Authorization at all", () => {
    expect(upstreamHeaders(client, transport(undefined), undefined).has("authorization")).toBe(false);
  });

  test("impersonation headers are kpass's own, never the client's", () => {
    const out = upstreamHeaders(client, transport("t"), { user: "alice", groups: ["devs", "qa"] });
    expect(out.get("impersonate-user")).toBe("alice");
    expect(out.get("impersonate-group")).toBe("devs, qa");
    expect(out.has("impersonate-extra-scopes")).toBe(false);
  });

  test("upgrades keep Connection: Upgrade and the Upgrade protocol, nothing else hop-by-hop", () => {
    const upgrade = new Headers({ Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io", Authorization: "Bearer c" });
    const out = upstreamHeaders(upgrade, transport("t"), undefined, { keepUpgrade: true });
    expect(out.get("connection")).toBe("Upgrade");
    expect(out.get("upgrade")).toBe("SPDY/3.1");
    expect(out.get("x-stream-protocol-version")).toBe("v4.channel.k8s.io");
    expect(out.get("authorization")).toBe("Bearer t");
  });
});
