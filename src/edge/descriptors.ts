import { readFileSync } from "node:fs";

/** The soft and hard limits on open descriptors, as the kernel reports them (Linux). */
function readLimits(): { soft: number; hard: number } | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const m = line && /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(line);
    if (!m) return undefined;
    const n = (v: string) => (v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return undefined;
  }
}

const RLIMIT_NOFILE = 7;

/**
 * Raises the soft descriptor limit to the hard one (each proxied stream holds two descriptors)
 * and returns the limit in force. Failure leaves the limit as it was: kpass then answers new
 * requests with 503 when it runs out, as it would at any limit.
 */
export async function raiseDescriptorLimit(): Promise<number | undefined> {
  const before = readLimits();
  if (!before || before.soft >= before.hard || process.platform !== "linux") return before?.soft;
  try {
    const { dlopen, FFIType, ptr } = await import("bun:ffi");
    const libc = dlopen("libc.so.6", { setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 } });
    const limits = new BigUint64Array([BigInt(before.hard), BigInt(before.hard)]);
    libc.symbols.setrlimit(RLIMIT_NOFILE, ptr(limits));
    libc.close();
  } catch {
    // No libc to call (static or non-glibc system): keep the limit.
  }
  return readLimits()?.soft;
}
