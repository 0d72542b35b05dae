import { syncDirectory, writeFileAtomic } from "./atomic-file.ts";
import { mkdir, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isDnsSubdomain, type StoredObject } from "../core/object.ts";
import { internalError } from "../core/status.ts";
import { logger } from "../core/log.ts";
import { UnknownKeyError, type KeyRing } from "./encryption.ts";

/**
 * One file per object under `<root>/<resource>/`: its JSON, sealed with the key ring when there is
 * one. A write is durable before it returns: temp file, fsync, rename over the old file, fsync the
 * directory. Files are 0600 because Cluster objects hold credentials.
 */
export class FilePersistence {
  /** Values sealed again as they were read (clear, or under an older key), since this was made. */
  resealed = 0;

  constructor(
    private readonly root: string,
    private readonly keys?: KeyRing,
    /** False: read only, nothing sealed again (the source of a `store copy`). */
    private readonly reseal = true,
  ) {}

  private directory(resource: string): string {
    return join(this.root, resource);
  }

  /**
   * Every object of `resource`. A file that is not a readable object named like its file is moved
   * aside (`<file>.corrupt`, kept for a human) and reported: one bad file must neither stop kpass
   * from starting nor hide the other objects.
   */
  async loadAll(resource: string): Promise<StoredObject[]> {
    const dir = this.directory(resource);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const objects: StoredObject[] = [];
    for (const file of await readdir(dir)) {
      if (!file.endsWith(".json") || file.startsWith(".")) continue;
      const read = await this.readObject(resource, join(dir, file), file.slice(0, -".json".length));
      if (!read) continue;
      objects.push(read.object);
      // Written in clear (before encryption) or under an older key: sealed again now, not at its next change.
      if (read.reseal && this.reseal) {
        await this.write(resource, read.object);
        this.resealed++;
      }
    }
    return objects;
  }

  write(resource: string, object: StoredObject): Promise<void> {
    const text = new TextEncoder().encode(JSON.stringify(object, null, 2));
    return this.writeAtomically(this.directory(resource), fileName(object.metadata.name), this.keys ? this.keys.seal(text, `${resource}/${object.metadata.name}`) : text);
  }

  private async readObject(resource: string, path: string, name: string): Promise<{ object: StoredObject; reseal: boolean } | undefined> {
    let problem: string;
    try {
      const bytes = new Uint8Array(await readFile(path));
      const opened = this.keys ? this.keys.open(bytes, `${resource}/${name}`) : { plain: bytes };
      const object = JSON.parse(new TextDecoder().decode(opened.plain)) as StoredObject | null;
      if (object && typeof object === "object" && object.metadata?.name === name && isDnsSubdomain(name)) return { object, reseal: this.keys ? this.keys.stale(opened) : false };
      problem = "not an object named like its file";
    } catch (error) {
      // A key missing from the key file is not damage: refuse to start rather than set the file aside.
      if (error instanceof UnknownKeyError) throw error;
      problem = (error as Error).message;
    }
    logger.warn(`${path}: ${problem}; moved aside to ${path}.corrupt, not loaded`);
    await rename(path, `${path}.corrupt`).catch((error: Error) => logger.error(`could not move ${path} aside: ${error.message}`));
    return undefined;
  }

  /**
   * Removes an object and records the revision of the deletion, so that after a restart the
   * revision clock never goes back below a revision a watcher has already seen.
   */
  async remove(resource: string, name: string, revision: number): Promise<void> {
    const dir = this.directory(resource);
    await this.writeAtomically(this.root, "revision", String(revision));
    await unlink(join(dir, fileName(name)));
    await syncDirectory(dir);
  }

  /** The highest revision recorded by a deletion, or 0. */
  async lastDeletedRevision(): Promise<number> {
    try {
      return Number(await readFile(join(this.root, "revision"), "utf8")) || 0;
    } catch {
      return 0;
    }
  }

  private async writeAtomically(dir: string, file: string, content: string | Uint8Array): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(dir, file), content, { syncDirectory: true });
  }
}

/** The file of object `name`; a name that could leave the directory is a bug above (a 500, never a path). */
function fileName(name: string): string {
  if (!isDnsSubdomain(name)) throw internalError(`refusing to store an object named ${JSON.stringify(name.slice(0, 256))}: not a DNS subdomain`);
  return `${name}.json`;
}

