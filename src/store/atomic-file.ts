/**
 * Writing a file so that a reader (or a crash) sees the old content or the new, never half of it:
 * a temp file in the same directory, written and flushed, renamed over the target. The one place
 * kpass does this, for stored objects, secrets, the encryption key file and the admin kubeconfig.
 */
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export interface AtomicWriteOptions {
  /** The file's mode, set exactly (the umask does not apply); default 0600. */
  mode?: number;
  /** Also flush the directory, so that the rename itself survives a power loss. */
  syncDirectory?: boolean;
}

export async function writeFileAtomic(path: string, content: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}-${crypto.randomUUID()}.tmp`);
  try {
    const handle = await open(temp, "wx", mode);
    try {
      await handle.chmod(mode);
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  if (options.syncDirectory) await syncDirectory(dir);
}

/** Flushes a directory's entries (a rename or a removal in it). */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
