/** A store that keeps objects in memory only: for tests about authentication, not durability. */
import type { StoredObject } from "../../src/core/object.ts";
import { FilePersistence } from "../../src/store/file-persistence.ts";

export class MemoryPersistence extends FilePersistence {
  constructor() {
    super("/nonexistent/kpass-memory-persistence");
  }
  override async loadAll(_resource: string): Promise<StoredObject[]> {
    return [];
  }
  override async write(_resource: string, _object: StoredObject): Promise<void> {}
  override async remove(_resource: string, _name: string, _revision: number): Promise<void> {}
  override async lastDeletedRevision(): Promise<number> {
    return 0;
  }
}
