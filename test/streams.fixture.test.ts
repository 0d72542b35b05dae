/**
 * The streaming-subresource fixture (test/fixture/streams) against real clients: kubectl 1.27/1.29
 * (SPDY/3.1), 1.30 (WebSocket exec, SPDY port-forward), 1.31/1.33 (WebSocket exec, SPDY tunnelled in
 * WebSocket for port-forward) and @kubernetes/client-node, plus wire-level checks with a raw client.
 *
 * The scenarios live in test/fixture/streams/scenarios.ts and take any kubeconfig, so the same
 * ones can run through kpass.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import zlib from "node:zlib";
import { WebSocket } from "ws";
import { runKubectl } from "./harness/kubectl.ts";
import { startTestCluster, type TestCluster } from "./fixture/cluster/server.ts";
import { createStreamUpgradeHandler, type StreamUpgradeFixture } from "./fixture/streams/index.ts";
import { startMiniApiServer, type MiniApiServer } from "./fixture/streams/mini-apiserver.ts";
import {
  clientNodeExecScenario,
  cpScenario,
  defineClientNodeScenarioTests,
  defineStreamScenarioTests,
  execExitCodeScenario,
  portForwardScenario,
  type StreamScenarioTarget,
} from "./fixture/streams/scenarios.ts";
import { SPDY3_DICTIONARY, decodeHeaderBlock, encodeHeaderBlock } from "./fixture/streams/spdy.ts";
import { containerArgv } from "./fixture/streams/remotecommand.ts";

let server: MiniApiServer;
const target = (): StreamScenarioTarget => ({ kubeconfig: server.kubeconfigPath });

beforeAll(async () => {
  server = await startMiniApiServer({ pods: ["default/web-0", "default/other-0"] });
});

afterAll(async () => {
  await server?.close();
});

describe("SPDY/3 building blocks", () => {
  test("the header dictionary is the SPDY/3 one (length and zlib dictionary id)", () => {
    expect(SPDY3_DICTIONARY.length).toBe(1423);
    const compressed = zlib.deflateSync(Buffer.from("x"), { dictionary: SPDY3_DICTIONARY });
    expect(compressed.readUInt32BE(2).toString(16)).toBe("e3c6a7c2");
  });

  test("header blocks round-trip, names lower-cased, values NUL-separated", () => {
    const block = encodeHeaderBlock({ StreamType: "error", multi: ["a", "b"] });
    const decoded = decodeHeaderBlock(block);
    expect(decoded?.used).toBe(block.length);
    expect(decoded?.headers.get("streamtype")).toEqual(["error"]);
    expect(decoded?.headers.get("multi")).toEqual(["a", "b"]);
    expect(decodeHeaderBlock(block.subarray(0, block.length - 1))).toBeUndefined();
  });

  test("without mount namespaces, /tmp arguments are taken relative to the pod directory", () => {
    expect(containerArgv(["tar", "cf", "-", "/tmp/x"])).toEqual(["tar", "cf", "-", "tmp/x"]);
    expect(containerArgv(["/bin/sh", "-c", "cat /tmp/x"])).toEqual(["/bin/sh", "-c", "cat /tmp/x"]);
    expect(containerArgv(["cat", "/dev/null", "/tmp"])).toEqual(["cat", "/dev/null", "tmp"]);
  });
});

describe("wire level", () => {
  function rawUpgrade(path: string, headers: Record<string, string>): Promise<string> {
    const url = new URL(server.url);
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: server.caPem }, () => {
        const head = Object.entries({ Host: url.host, Authorization: `Bearer ${server.token}`, ...headers })
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join("");
        socket.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`);
      });
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1");
        if (text.includes("\r\n\r\n")) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on("error", reject);
      setTimeout(() => reject(new Error("no answer")), 5000).unref();
    });
  }

  test("SPDY upgrade: no common protocol is a 403 naming the accepted ones", async () => {
    const answer = await rawUpgrade("/api/v1/namespaces/default/pods/web-0/exec?command=true&stdout=true", {
      Connection: "Upgrade",
      Upgrade: "SPDY/3.1",
      "X-Stream-Protocol-Version": "v9.channel.k8s.io",
    });
    expect(answer).toStartWith("HTTP/1.1 403");
    expect(answer).toContain("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io");
  });

  test("SPDY upgrade: answers 101 with the client's first supported protocol", async () => {
    const answer = await rawUpgrade("/api/v1/namespaces/default/pods/web-0/exec?command=true&stdout=true", {
      Connection: "Upgrade",
      Upgrade: "SPDY/3.1",
      "X-Stream-Protocol-Version": "v9.channel.k8s.io, v3.channel.k8s.io, v4.channel.k8s.io",
    });
    expect(answer).toStartWith("HTTP/1.1 101 Switching Protocols\r\n");
    expect(answer).toContain("Upgrade: SPDY/3.1\r\n");
    expect(answer).toContain("X-Stream-Protocol-Version: v3.channel.k8s.io\r\n");
  });

  test("exec without stdin/stdout/stderr is refused with a Status", async () => {
    const answer = await rawUpgrade("/api/v1/namespaces/default/pods/web-0/exec?command=true", {
      Connection: "Upgrade",
      Upgrade: "SPDY/3.1",
      "X-Stream-Protocol-Version": "v4.channel.k8s.io",
    });
    expect(answer).toStartWith("HTTP/1.1 400");
  });

  function wsSession(path: string, protocols: string[]): Promise<{ protocol: string; messages: (Buffer | string)[]; closeCode: number }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${server.url.replace("https", "wss")}${path}`, protocols, {
        ca: server.caPem,
        headers: { Authorization: `Bearer ${server.token}` },
      });
      const messages: (Buffer | string)[] = [];
      ws.on("message", (data: Buffer, isBinary: boolean) => messages.push(isBinary ? Buffer.from(data) : data.toString()));
      ws.on("close", (code: number) => resolve({ protocol: ws.protocol, messages, closeCode: code }));
      ws.on("error", reject);
    });
  }

  test("WebSocket v4.channel.k8s.io exec: empty hello on stdout, output, Status on channel 3, close 1000", async () => {
    const path = "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=echo%20hi%3B%20exit%202&stdout=true&stderr=true";
    const session = await wsSession(path, ["v4.channel.k8s.io"]);
    expect(session.protocol).toBe("v4.channel.k8s.io");
    expect(session.closeCode).toBe(1000);
    const binary = session.messages as Buffer[];
    expect([...binary[0]!]).toEqual([1]);
    expect(binary[1]![0]).toBe(1);
    expect(binary[1]!.subarray(1).toString()).toBe("hi\n");
    const status = binary.find((m) => m[0] === 3)!;
    expect(JSON.parse(status.subarray(1).toString())).toMatchObject({
      status: "Failure",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "2" }] },
    });
  });

  test("WebSocket base64.channel.k8s.io exec: text frames, failures as plain text", async () => {
    const path = "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=echo%20hi%3B%20exit%202&stdout=true";
    const session = await wsSession(path, ["base64.channel.k8s.io"]);
    expect(session.protocol).toBe("base64.channel.k8s.io");
    const text = session.messages as string[];
    expect(text[0]).toBe("1");
    expect(text).toContain("1" + Buffer.from("hi\n").toString("base64"));
    const error = text.find((m) => m.startsWith("3"))!;
    expect(Buffer.from(error.slice(1), "base64").toString()).toBe("command terminated with non-zero exit code: exit status 2");
  });

  test("WebSocket port-forward (kubelet v4.channel.k8s.io): port prefix on data and error channels", async () => {
    const ws = new WebSocket(`${server.url.replace("https", "wss")}/api/v1/namespaces/default/pods/web-0/portforward?ports=80`, ["v4.channel.k8s.io"], {
      ca: server.caPem,
      headers: { Authorization: `Bearer ${server.token}` },
    });
    const messages: Buffer[] = [];
    const echoed = new Promise<void>((resolve, reject) => {
      ws.on("message", (data: Buffer) => {
        messages.push(Buffer.from(data));
        if (messages.length === 2) ws.send(Buffer.concat([Buffer.from([0]), Buffer.from("ping")]));
        if (Buffer.concat(messages.filter((m) => m[0] === 0).map((m) => m.subarray(1))).toString().endsWith("ping")) resolve();
      });
      ws.on("error", reject);
    });
    await echoed;
    ws.close();
    expect(messages.slice(0, 2).map((m) => [...m])).toEqual([
      [0, 80, 0],
      [1, 80, 0],
    ]);
  });

  test("unknown pod is a 404 before any upgrade", async () => {
    const answer = await rawUpgrade("/api/v1/namespaces/default/pods/nope/exec?command=true&stdout=true", {
      Connection: "Upgrade",
      Upgrade: "SPDY/3.1",
      "X-Stream-Protocol-Version": "v4.channel.k8s.io",
    });
    expect(answer).toStartWith("HTTP/1.1 404");
  });
});

describe("kubectl", () => {
  defineStreamScenarioTests("fixture", target);

  for (const version of ["1.27", "1.33"] as const) {
    test(`kubectl ${version}: a missing command is an error, not an exit code`, async () => {
      const result = await runKubectl(version, ["--kubeconfig", server.kubeconfigPath, "exec", "web-0", "--", "no-such-binary"]);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain('executable file not found in $PATH');
    });

    test(`kubectl ${version}: the pod's /tmp is its own, seen the same from every command`, async () => {
      const write = await runKubectl(version, ["--kubeconfig", server.kubeconfigPath, "exec", "web-0", "--", "sh", "-c", `echo mine > /tmp/own-${version}`]);
      expect(write.exitCode, write.stderr).toBe(0);
      const read = await runKubectl(version, ["--kubeconfig", server.kubeconfigPath, "exec", "web-0", "--", "cat", `/tmp/own-${version}`]);
      expect(read.stdout).toBe("mine\n");
      const other = await runKubectl(version, ["--kubeconfig", server.kubeconfigPath, "exec", "other-0", "--", "ls", "/tmp"]);
      expect(other.stdout).not.toContain(`own-${version}`);
      expect(existsSync(`/tmp/own-${version}`)).toBe(false);
      expect(existsSync(join(server.streams.podRoot("default", "web-0"), "tmp", `own-${version}`))).toBe(true);
    });
  }

  test("sessions were recorded per transport and all ended", async () => {
    await server.streams.sessions.waitForIdle(10_000);
    const all = server.streams.sessions.all;
    const transports = new Set(all.map((s) => `${s.kind}/${s.transport}/${s.protocol}`));
    expect(transports).toContain("exec/spdy/v4.channel.k8s.io");
    expect(transports).toContain("exec/websocket/v5.channel.k8s.io");
    expect(transports).toContain("attach/spdy/v4.channel.k8s.io");
    expect(transports).toContain("attach/websocket/v5.channel.k8s.io");
    expect(transports).toContain("portforward/spdy/portforward.k8s.io");
    expect(transports).toContain("portforward/spdy-over-websocket/SPDY/3.1+portforward.k8s.io");
    const tty = all.filter((s) => s.kind === "exec" && s.tty);
    expect(tty.length).toBeGreaterThanOrEqual(5);
    for (const session of tty) expect(session.resizes).toContainEqual({ width: 101, height: 31 });
    expect(all.find((s) => s.command?.join(" ") === "sh -c echo before; exit 3")?.exitCode).toBe(3);
    const forwards = all.filter((s) => s.kind === "portforward" && s.transport !== "websocket");
    for (const session of forwards) expect(session.forwardedPorts.length).toBeGreaterThanOrEqual(4);
  });
});

describe("@kubernetes/client-node", () => {
  defineClientNodeScenarioTests("fixture", target);
});

describe("plugged into the fake API server (test/fixture/cluster)", () => {
  const TOKEN = `streams-${crypto.randomUUID()}`;
  let cluster: TestCluster;
  let streams: StreamUpgradeFixture;
  let dir: string;
  let clusterTarget: StreamScenarioTarget;

  beforeAll(async () => {
    streams = createStreamUpgradeHandler();
    cluster = await startTestCluster({ credential: { type: "token", token: TOKEN }, upgrade: streams.handler });
    dir = mkdtempSync(join(tmpdir(), "kpass-streams-cluster-"));
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "test", cluster: { server: cluster.url, "certificate-authority-data": Buffer.from(cluster.caPem).toString("base64") } }],
        users: [{ name: "test", user: { token: TOKEN } }],
        contexts: [{ name: "test", context: { cluster: "test", user: "test" } }],
        "current-context": "test",
      }),
      { mode: 0o600 },
    );
    clusterTarget = { kubeconfig, context: "test" };
  });

  afterAll(async () => {
    await streams?.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const version of ["1.27", "1.33"] as const) {
    test(`kubectl ${version}: exec exit code, cp and port-forward`, async () => {
      await execExitCodeScenario(version, clusterTarget);
      await cpScenario(version, clusterTarget);
      await portForwardScenario(version, clusterTarget);
    }, 60_000);
  }

  test("client-node Exec", () => clientNodeExecScenario(clusterTarget), 30_000);

  test("every upgraded connection was closed", async () => {
    await streams.sessions.waitForIdle(10_000);
    expect(streams.sessions.all.length).toBeGreaterThan(10);
  });
});
