/**
 * sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, so a `Type=notify` unit is
 * started only once kpass listens and its admin kubeconfig is written. Bun has no AF_UNIX datagram
 * socket (node:dgram is UDP only), so this calls libc's socket/sendto through bun:ffi, as
 * edge/descriptors.ts does for setrlimit. Measured on Bun 1.4.5: about 1 ms, once, at startup.
 */

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH_MAX = 108;

/** struct sockaddr_un for `path`; "@name" is Linux's abstract namespace (a leading NUL). */
export function unixAddress(path: string): { address: Uint8Array; length: number } {
  const abstract = path.startsWith("@");
  const name = abstract ? Buffer.concat([Buffer.from([0]), Buffer.from(path.slice(1))]) : Buffer.from(path);
  if (name.length >= SUN_PATH_MAX) throw new Error(`NOTIFY_SOCKET is longer than ${SUN_PATH_MAX - 1} bytes`);
  const address = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, 2);
  // An abstract name is exactly its bytes; a path is NUL-terminated.
  return { address, length: 2 + name.length + (abstract ? 0 : 1) };
}

/**
 * Sends `state` (e.g. "READY=1") to the service manager when one is listening; a no-op when
 * $NOTIFY_SOCKET is unset. Returns whether the datagram went out.
 */
export async function sdNotify(state: string, socketPath = process.env.NOTIFY_SOCKET): Promise<boolean> {
  if (!socketPath) return false;
  const { dlopen, FFIType, ptr } = await import("bun:ffi");
  const libc = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  });
  try {
    const fd = libc.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const { address, length } = unixAddress(socketPath);
    const message = Buffer.from(state);
    const sent = libc.symbols.sendto(fd, ptr(message), message.length, 0, ptr(address), length);
    libc.symbols.close(fd);
    return Number(sent) === message.length;
  } finally {
    libc.close();
  }
}

/**
 * READY=1 once kpass serves. Under `Type=notify` a READY that never arrives makes systemd kill
 * kpass after TimeoutStartSec, so a failure is said loudly rather than swallowed.
 */
export function notifyReady(status: string): void {
  if (!process.env.NOTIFY_SOCKET) return;
  sdNotify(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`).then(
    (sent) => {
      if (!sent) console.error(`kpass: could not notify the service manager at ${process.env.NOTIFY_SOCKET}; systemd will consider the start failed`);
    },
    (error: Error) => console.error(`kpass: could not notify the service manager: ${error.message}`),
  );
}
