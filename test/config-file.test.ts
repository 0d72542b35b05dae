import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { flagOf, SERVE_OPTIONS } from "../src/cli/serve-options.ts";
import { removeDataDir, startKpass } from "./harness/kpass.ts";

const ROOT = join(import.meta.dir, "..");
const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDataDir));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kpass-config-"));
  dirs.push(dir);
  return dir;
}

// $KPASS_DATA_DIR outranks the file's data; a developer's own must not change what these tests see.
const { KPASS_DATA_DIR: _ignored, ...ENV } = process.env;

/** Runs the kpass command to its end, as a user at a shell would. */
async function kpass(args: string[], env: Record<string, string | undefined> = ENV): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), ...args], { stdout: "pipe", stderr: "pipe", cwd: ROOT, env });
  // A serve that wrongly starts would run forever; a bounded wait turns that into a failure.
  const timer = setTimeout(() => proc.kill(), 20_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

/** A port nothing listens on right now, for a config file to name. */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = probe;
  probe.stop(true);
  return port;
}

/** Every option set to something other than its default. */
function everyOption(dir: string, port: number): string {
  return [
    "data: ./state              # relative: from this file's directory",
    `listen: 127.0.0.1:${port}`,
    "san: [kpass-config.example.test, 10.11.12.13]",
    "externalUrl: https://kpass.example.test:9443",
    `tlsCert: ${join(dir, "tls.crt")}`,
    `tlsKey: ${join(dir, "tls.key")}`,
    `caCert: ${join(dir, "ca.crt")}`,
    "probeInterval: 5s",
    "upstreamTimeout: 7s",
    "connectTimeout: 3s",
    "idleTimeout: 1s",
    "maxStreamsPerPass: 1",
    "audit: stdout",
    "auditMaxSize: 5Mi",
    "auditMaxBackups: 2",
    "maxCertTtl: 2h",
    "shutdownGrace: 4s",
    "shutdownDelay: 1s",
    "metricsListen: 127.0.0.1:19090",
    "metrics: on",
    "logFormat: text",
    "logLevel: info",
    "aggregated: false",
    "hostKubeconfig: ./host.kubeconfig",
    "hostRefresh: 10s",
    "store: file",
    "etcdEndpoints: [https://10.0.0.5:2379, https://10.0.0.6:2379]",
    "etcdPrefix: /kpass-test/",
    "etcdCafile: ./etcd-ca.crt",
    "etcdCertfile: ./etcd-client.crt",
    "etcdKeyfile: ./etcd-client.key",
    "encryptionKeyFile: ./encryption.key",
    "",
  ].join("\n");
}

describe("kpass serve --config", () => {
  test("a file may set every option, and config show reads each back as written", async () => {
    const dir = tempDir();
    const file = join(dir, "config.yaml");
    writeFileSync(file, everyOption(dir, 18443));
    const shown = await kpass(["config", "show", "--config", file]);
    expect(shown.stderr).toBe("");
    expect(parse(shown.stdout)).toEqual({
      data: join(dir, "state"),
      listen: "127.0.0.1:18443",
      san: ["kpass-config.example.test", "10.11.12.13"],
      externalUrl: "https://kpass.example.test:9443",
      tlsCert: join(dir, "tls.crt"),
      tlsKey: join(dir, "tls.key"),
      caCert: join(dir, "ca.crt"),
      probeInterval: "5s",
      upstreamTimeout: "7s",
      connectTimeout: "3s",
      idleTimeout: "1s",
      maxStreamsPerPass: 1,
      audit: "stdout",
      auditMaxSize: "5Mi",
      auditMaxBackups: 2,
      maxCertTtl: "2h",
      shutdownGrace: "4s",
      shutdownDelay: "1s",
      metricsListen: "127.0.0.1:19090",
      metrics: "on",
      logFormat: "text",
      logLevel: "info",
      aggregated: false,
      hostKubeconfig: join(dir, "host.kubeconfig"),
      hostRefresh: "10s",
      store: "file",
      etcdEndpoints: ["https://10.0.0.5:2379", "https://10.0.0.6:2379"],
      etcdPrefix: "/kpass-test/",
      etcdCafile: join(dir, "etcd-ca.crt"),
      etcdCertfile: join(dir, "etcd-client.crt"),
      etcdKeyfile: join(dir, "etcd-client.key"),
      encryptionKeyFile: join(dir, "encryption.key"),
    });
    // The test sets every key, so a new option without one here fails this test.
    expect(Object.keys(parse(shown.stdout)).sort()).toEqual(Object.keys(SERVE_OPTIONS).sort());
    // What config show prints is itself a config file meaning the same.
    writeFileSync(join(dir, "shown.yaml"), shown.stdout);
    expect((await kpass(["config", "show", "--config", join(dir, "shown.yaml")])).stdout).toBe(shown.stdout);
  });

  test("kpass serve honours the file: data dir, listen port, SANs, external URL, idle timeout, stream limit, audit to stdout", async () => {
    const dir = tempDir();
    const port = freePort();
    const file = join(dir, "kpass.yaml");
    writeFileSync(file, everyOption(dir, port).split("\n").filter((line) => !/^(tlsCert|tlsKey|caCert|encryptionKeyFile):/.test(line)).join("\n"));
    const dataDir = join(dir, "state");
    const server = await startKpass({ harnessFlags: false, env: ENV, dataDir, args: ["--config", file] });
    expect(server.url).toBe(`https://127.0.0.1:${port}`);
    expect(existsSync(join(dataDir, "token-signing.jwk"))).toBe(true);
    const kubeconfig = parse(readFileSync(server.adminKubeconfig, "utf8"));
    expect(kubeconfig.clusters[0].cluster.server).toBe("https://kpass.example.test:9443");
    const serving = new X509Certificate(readFileSync(join(dataDir, "serving.crt")));
    expect(serving.subjectAltName).toContain("DNS:kpass-config.example.test");
    expect(serving.subjectAltName).toContain("IP Address:10.11.12.13");

    // maxStreamsPerPass: 1 — the admin's second open watch is refused while the first is open.
    const first = new AbortController();
    const watch = await fetch(`${server.url}/apis/cluster.kpass.dev/v1beta1/passes?watch=true`, { headers: { authorization: `Bearer ${server.adminToken}` }, tls: { ca: server.caPem }, signal: first.signal });
    expect(watch.status).toBe(200);
    const second = await server.api("GET", "/apis/cluster.kpass.dev/v1beta1/passes?watch=true");
    expect(second.status).toBe(429);
    first.abort();

    // audit: stdout — a refused request to an unknown cluster is written to stdout, not a file.
    const refused = await server.api("GET", "/apis/cluster.kpass.dev/v1beta1/clusters/nowhere/proxy/api/v1/pods");
    expect(refused.status).toBe(404);
    for (let i = 0; i < 100 && !server.stdout().includes("nowhere"); i++) await Bun.sleep(50);
    expect(server.stdout()).toContain("/clusters/nowhere/proxy/api/v1/pods");
    expect(existsSync(join(dataDir, "audit.log"))).toBe(false);

    // idleTimeout: 1s — an idle keep-alive connection is closed by kpass well before the 2 min default.
    const closedBy = await new Promise<string>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port, ca: server.caPem, servername: "localhost" }, () => {
        socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
      });
      let answered = false;
      socket.on("data", (chunk) => (answered ||= chunk.toString().startsWith("HTTP/1.1 200")));
      socket.on("close", () => resolve(answered ? "kpass, after answering" : "kpass, without answering"));
      setTimeout(() => {
        socket.destroy();
        resolve("nobody within 15 s");
      }, 15_000);
    });
    expect(closedBy).toBe("kpass, after answering");
    await server.stop();
  });

  test("flags on the command line override the file; $KPASS_DATA_DIR overrides its data", async () => {
    const dir = tempDir();
    const filePort = freePort();
    const file = join(dir, "kpass.yaml");
    writeFileSync(file, `data: ${join(dir, "from-file")}\nlisten: 127.0.0.1:${filePort}\nsan: [from-file.example.test]\nupstreamTimeout: 5s\n`);
    const dataDir = join(dir, "from-flag");
    const server = await startKpass({ harnessFlags: false, env: ENV, dataDir, args: ["--config", file, "--data", dataDir, "--listen", "127.0.0.1:0", "--san", "from-flag.example.test"] });
    expect(server.url).not.toBe(`https://127.0.0.1:${filePort}`);
    expect(existsSync(join(dir, "from-file"))).toBe(false);
    // A repeated flag replaces the file's list rather than adding to it.
    const sans = new X509Certificate(readFileSync(join(dataDir, "serving.crt"))).subjectAltName ?? "";
    expect(sans).toContain("DNS:from-flag.example.test");
    expect(sans).not.toContain("from-file.example.test");
    await server.stop();

    const shown = await kpass(["config", "show", "--config", file, "--upstream-timeout", "9s"], { ...ENV, KPASS_DATA_DIR: join(dir, "from-env") });
    expect(parse(shown.stdout)).toMatchObject({ data: join(dir, "from-env"), upstreamTimeout: "9s", listen: `127.0.0.1:${filePort}`, san: ["from-file.example.test"] });
  });

  test("an unknown key stops kpass before it listens, naming the key, its line and the key meant", async () => {
    const dir = tempDir();
    const file = join(dir, "kpass.yaml");
    writeFileSync(file, `# kpass\nlisten: 127.0.0.1:0\ndata: ${dir}\n\nupstreamTimout: 30s\nidle-timeout: 1m\n`);
    const result = await kpass(["serve", "--config", file]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`${file}:5:1: unknown key "upstreamTimout" (did you mean "upstreamTimeout"?)`);
    expect(result.stderr).toContain(`${file}:6:1: unknown key "idle-timeout" (did you mean "idleTimeout"?)`);
    expect(result.stderr).not.toContain("listening on");
    expect(existsSync(join(dir, "admin.kubeconfig"))).toBe(false);
  });

  test("a value of the wrong type names the key, its line and what was expected", async () => {
    const dir = tempDir();
    const file = join(dir, "kpass.yaml");
    writeFileSync(file, `data: ${dir}\nupstreamTimeout: 60\nsan: kpass.example.test\nmaxStreamsPerPass: lots\naudit: syslog\nlisten:\n  host: 0.0.0.0\n`);
    const result = await kpass(["serve", "--config", file]);
    expect(result.exitCode).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toEqual([
      `kpass: ${file}:2:18: upstreamTimeout: 60 has no unit: write a duration such as 60s or 60m`,
      `kpass: ${file}:3:6: san: must be a list such as [kpass.example.com, 10.0.0.5], not the string "kpass.example.test"`,
      `kpass: ${file}:4:20: maxStreamsPerPass: must be a number from 0 to 10000, not the string "lots"`,
      `kpass: ${file}:5:8: audit: "syslog" must be one of file, stdout, both, off`,
      `kpass: ${file}:7:3: listen: must be HOST:PORT such as 0.0.0.0:8443, not a mapping`,
    ]);
  });

  test("YAML that does not parse, a file that is not a mapping, and a missing file are clear errors", async () => {
    const dir = tempDir();
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, "listen: 127.0.0.1:0\nsan: [a, b\n");
    const parsed = await kpass(["serve", "--config", broken]);
    expect(parsed.exitCode).toBe(1);
    // The unclosed list opens on line 2; the parser notices at its end, line 3. Never line 1.
    expect(parsed.stderr).toMatch(new RegExp(`^kpass: ${broken}:[23]:\\d+: .*\\]`));
    const list = join(dir, "list.yaml");
    writeFileSync(list, "- listen: 127.0.0.1:0\n");
    expect((await kpass(["serve", "--config", list])).stderr).toContain(`${list}:1:1: the config file must be a mapping`);
    const missing = await kpass(["serve", "--config", join(dir, "absent.yaml")]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toBe(`kpass: --config: cannot read ${join(dir, "absent.yaml")}: no such file\n`);
  });
});

describe("kpass config example", () => {
  test("prints every key with its meaning, and loads as printed and with every example uncommented", async () => {
    const dir = tempDir();
    const example = await kpass(["config", "example"]);
    expect(example.exitCode).toBe(0);
    for (const key of Object.keys(SERVE_OPTIONS)) expect(example.stdout).toMatch(new RegExp(`^(# )?${key}: `, "m"));
    const file = join(dir, "example.yaml");
    writeFileSync(file, example.stdout);
    const asPrinted = await kpass(["config", "show", "--config", file], ENV);
    expect(asPrinted.stderr).toBe("");
    // As printed it sets only defaults: the same as no file at all.
    expect(asPrinted.stdout).toBe((await kpass(["config", "show"], ENV)).stdout);

    const keys = Object.keys(SERVE_OPTIONS).join("|");
    writeFileSync(file, example.stdout.replace(new RegExp(`^# (${keys}): `, "gm"), "$1: "));
    const uncommented = await kpass(["config", "show", "--config", file]);
    expect(uncommented.stderr).toBe("");
    expect(Object.keys(parse(uncommented.stdout)).sort()).toEqual(Object.keys(SERVE_OPTIONS).sort());
  });

  test("serve --help lists every flag with its config key", async () => {
    const help = await kpass(["serve", "--help"]);
    expect(help.exitCode).toBe(0);
    for (const key of Object.keys(SERVE_OPTIONS)) {
      expect(help.stdout).toContain(`--${flagOf(key)} `);
      expect(help.stdout).toContain(`key ${key};`);
    }
  });
});
