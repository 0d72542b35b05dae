import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { StoredObject } from "./object.ts";

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

  async write(resource: string, object: StoredObject): Promise<void> {
    const dir = this.directory(resource);
    const target = join(dir, `${object.metadata.name}.json`);
    const temp = join(dir, `.${object.metadata.name}.${process.pid}.${crypto.randomUUID()}.tmp`);
    const handle = await open(temp, "w", 0o600);
    try {
      await handle.writeFile(JSON.stringify(object, null, 2));
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

  async remove(resource: string, name: string): Promise<void> {
    const dir = this.directory(resource);
    await unlink(join(dir, `${name}.json`));
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
