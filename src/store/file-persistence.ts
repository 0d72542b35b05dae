import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { StoredObject } from "../core/object.ts";

/**
 * One JSON file per object under `<root>/<resource>/`. A write is durable before it returns:
 * temp file, fsync, rename over the old file, fsync the directory. Files are 0600 because
 * Cluster objects hold credentials.
 */
export class FilePersistence {
  constructor(private readonly root: string) {}

  private directory(resource: string): string {
    return join(this.root, resource);
  }

  async loadAll(resource: string): Promise<StoredObject[]> {
    const dir = this.directory(resource);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const objects: StoredObject[] = [];
    for (const file of await readdir(dir)) {
      if (!file.endsWith(".json") || file.startsWith(".")) continue;
      const text = await readFile(join(dir, file), "utf8");
      objects.push(JSON.parse(text) as StoredObject);
    }
    return objects;
  }

  write(resource: string, object: StoredObject): Promise<void> {
    return this.writeAtomically(this.directory(resource), `${object.metadata.name}.json`, JSON.stringify(object, null, 2));
  }

  /**
   * Removes an object and records the revision of the deletion, so that after a restart the
   * revision clock never goes back below a revision a watcher has already seen.
   */
  async remove(resource: string, name: string, revision: number): Promise<void> {
    const dir = this.directory(resource);
    await this.writeAtomically(this.root, "revision", String(revision));
    await unlink(join(dir, `${name}.json`));
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

  private async writeAtomically(dir: string, file: string, content: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const target = join(dir, file);
    const temp = join(dir, `.${file}.${process.pid}.${crypto.randomUUID()}.tmp`);
    const handle = await open(temp, "w", 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, target);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
    await syncDirectory(dir);
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
