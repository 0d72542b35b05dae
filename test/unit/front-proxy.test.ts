/** auth/host.ts FrontProxy: which certificates are the aggregator's, and how X-Remote-* are read. */
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { FrontProxy, frontProxyConfig, splitPem } from "../../src/auth/host.ts";
import type { ClientCertificate } from "../../src/core/request-context.ts";
import { createCertificateAuthority, issueClientCertificate, issueServingCertificate } from "../../src/edge/pki.ts";

function presented(certPem: string): ClientCertificate {
  const cert = new X509Certificate(certPem);
  return { der: new Uint8Array(cert.raw), serial: cert.serialNumber };
}

const data = (ca: string, allowed: string[]) => ({
  "requestheader-client-ca-file": ca,
  "requestheader-allowed-names": JSON.stringify(allowed),
  "requestheader-username-headers": JSON.stringify(["X-Remote-User"]),
  "requestheader-group-headers": JSON.stringify(["X-Remote-Group"]),
  "requestheader-extra-headers-prefix": JSON.stringify(["X-Remote-Extra-"]),
});

describe("the ConfigMap", () => {
  test("its keys as kube-apiserver writes them (JSON lists), header names lower-cased", async () => {
    const a = await createCertificateAuthority("a");
    const b = await createCertificateAuthority("b");
    const config = frontProxyConfig(data(a.certPem + b.certPem, ["front-proxy-client"]))!;
    expect(config.caPems.length).toBe(2);
    expect(config.allowedNames).toEqual(["front-proxy-client"]);
    expect(config.usernameHeaders).toEqual(["x-remote-user"]);
    expect(config.extraHeaderPrefixes).toEqual(["x-remote-extra-"]);
    expect(splitPem(a.certPem + b.certPem).length).toBe(2);
  });

  test("without requestheader-client-ca-file there is no front proxy", () => {
    expect(frontProxyConfig({ "client-ca-file": "x" })).toBeUndefined();
  });
});

describe("the aggregator's certificate", () => {
  test("signed by the requestheader CA with an allowed CN; another CN refused; an empty list allows any CN", async () => {
    const ca = await createCertificateAuthority("front-proxy-ca");
    const good = await issueClientCertificate(ca, { commonName: "front-proxy-client" });
    const other = await issueClientCertificate(ca, { commonName: "someone" });
    const proxy = new FrontProxy(frontProxyConfig(data(ca.certPem, ["front-proxy-client"])));
    expect(proxy.check(presented(good.certPem))).toEqual({ from: "front-proxy" });
    expect(proxy.check(presented(other.certPem)).from).toBe("refused");
    const anyName = new FrontProxy(frontProxyConfig(data(ca.certPem, [])));
    expect(anyName.check(presented(other.certPem))).toEqual({ from: "front-proxy" });
  });

  test("a certificate of another CA is not the aggregator's (it may be a pass certificate)", async () => {
    const ca = await createCertificateAuthority("front-proxy-ca");
    const elsewhere = await createCertificateAuthority("elsewhere");
    const cert = await issueClientCertificate(elsewhere, { commonName: "front-proxy-client" });
    expect(new FrontProxy(frontProxyConfig(data(ca.certPem, []))).check(presented(cert.certPem))).toEqual({ from: "other" });
    expect(new FrontProxy().check(presented(cert.certPem))).toEqual({ from: "other" });
  });

  test("a serving certificate (no clientAuth) of the CA is refused", async () => {
    const ca = await createCertificateAuthority("front-proxy-ca");
    const serving = await issueServingCertificate(ca, { commonName: "front-proxy-client", dnsNames: ["x"], ipAddresses: [] });
    expect(new FrontProxy(frontProxyConfig(data(ca.certPem, []))).check(presented(serving.certPem)).from).toBe("refused");
  });

  test("a new configuration is taken up at once (allowed names change)", async () => {
    const ca = await createCertificateAuthority("front-proxy-ca");
    const cert = presented((await issueClientCertificate(ca, { commonName: "front-proxy-client" })).certPem);
    const proxy = new FrontProxy(frontProxyConfig(data(ca.certPem, ["front-proxy-client"])));
    let changes = 0;
    proxy.onChange(() => changes++);
    expect(proxy.check(cert).from).toBe("front-proxy");
    proxy.set(frontProxyConfig(data(ca.certPem, ["another"])));
    expect(proxy.check(cert).from).toBe("refused");
    proxy.set(frontProxyConfig(data(ca.certPem, ["another"])));
    expect(changes).toBe(1);
  });
});

describe("the user in the headers", () => {
  test("user, groups one per line, extras decoded; nothing without a user", async () => {
    const ca = await createCertificateAuthority("front-proxy-ca");
    const proxy = new FrontProxy(frontProxyConfig(data(ca.certPem, [])));
    const raw: [string, string][] = [["X-Remote-User", "alice"], ["X-Remote-Group", "a, b"], ["X-Remote-Group", "c"], ["X-Remote-Extra-Scopes", "s1"], ["X-Remote-Extra-Scopes", "s2"], ["X-Remote-Extra-Acme.com%2Fteam", "t"]];
    const headers = new Headers(raw);
    expect(proxy.user(headers, raw)).toEqual({ user: "alice", groups: ["a, b", "c"], extra: { scopes: ["s1", "s2"], "acme.com/team": ["t"] } });
    expect(proxy.user(new Headers({ "x-remote-group": "g" }), [["X-Remote-Group", "g"]])).toBeUndefined();
  });
});
