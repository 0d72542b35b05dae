import { describe, expect, test } from "bun:test";
import { ConfigFileError, flagOf, mergeOptions, optionsFromFlags, readConfigFile, SERVE_OPTIONS, serverConfig, showOptions } from "../../src/cli/serve-options.ts";

/** What kpass would run with for these flags and this file text, as `config show` prints it. */
function shown(flags: Record<string, string | string[]>, file = ""): string {
  return showOptions(mergeOptions(optionsFromFlags(flags), readConfigFile("/etc/kpass/config.yaml", file), {}));
}

function problems(text: string): string[] {
  try {
    readConfigFile("/etc/kpass/config.yaml", text);
  } catch (error) {
    if (error instanceof ConfigFileError) return error.problems;
    throw error;
  }
  return [];
}

describe("serve options", () => {
  test("each config key's flag is its kebab-case, and no two keys share a flag", () => {
    const flags = Object.keys(SERVE_OPTIONS).map(flagOf);
    expect(new Set(flags).size).toBe(flags.length);
    expect(flags).toContain("max-streams-per-pass");
    expect(flags).toContain("external-url");
  });

  test("values config show writes read back as the same values, for the awkward spellings", () => {
    const flags = { "upstream-timeout": "1h30m", "probe-interval": "1.5s", "idle-timeout": "90s", "connect-timeout": "0s", "audit-max-size": "1536Ki", listen: "[::1]:8443" };
    const text = shown(flags);
    expect(text).toContain("upstreamTimeout: 1h30m\n");
    expect(text).toContain("probeInterval: 1.5s\n");
    expect(text).toContain("idleTimeout: 1m30s\n");
    expect(text).toContain("connectTimeout: 0s\n");
    expect(text).toContain("auditMaxSize: 1536Ki\n");
    expect(text).toContain("listen: \"[::1]:8443\"\n");
    expect(shown({}, text)).toBe(text);
  });

  test("sizes may be plain byte counts in the file, durations may not be plain numbers", () => {
    expect(shown({}, "auditMaxSize: 1048576\n")).toContain("auditMaxSize: 1Mi\n");
    expect(problems("idleTimeout: 120\n")).toEqual(["/etc/kpass/config.yaml:1:14: idleTimeout: 120 has no unit: write a duration such as 120s or 120m"]);
  });

  test("a key given twice, a key that is not a name, an empty value and `config` itself are errors with lines", () => {
    expect(problems("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n")[0]).toStartWith("/etc/kpass/config.yaml:2:1: Map keys must be unique");
    expect(problems("? [a]\n: b\n")).toEqual(["/etc/kpass/config.yaml:1:3: keys must be option names such as listen"]);
    expect(problems("\n\ntlsCert:\n")).toEqual(["/etc/kpass/config.yaml:3:1: tlsCert: must be a string, not nothing (remove the key to use the default)"]);
    expect(problems("config: other.yaml\n")).toEqual(['/etc/kpass/config.yaml:1:1: unknown key "config" (a config file cannot name another)']);
  });

  test("an empty file or one of only comments sets nothing", () => {
    expect(readConfigFile("/etc/kpass/config.yaml", "")).toEqual({});
    expect(readConfigFile("/etc/kpass/config.yaml", "# nothing yet\n")).toEqual({});
  });

  test("relative paths in the file are from its directory; the audit choice maps onto both sinks", () => {
    const options = mergeOptions({}, readConfigFile("/etc/kpass/config.yaml", "data: state\ntlsCert: ../pki/tls.crt\naudit: both\n"), {});
    const config = serverConfig(options);
    expect(config.dataDir).toBe("/etc/kpass/state");
    expect(config.tlsCertFile).toBe("/etc/pki/tls.crt");
    expect(config.audit).toEqual({ file: true, stdout: true, maxBytes: 100 * 1024 ** 2, maxBackups: 10 });
    expect(config.idleTimeoutSeconds).toBe(120);
    expect(config.connectTimeoutMs).toBeUndefined();
  });
});
