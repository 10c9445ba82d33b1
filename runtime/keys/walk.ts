// Walks every stored key in keyId order, a page at a time: the loop of the `keys` commands.
import type { KeyRecord, WrappedKeyStore } from '../store/store.js';

export interface WalkOptions {
  /** Start after this keyId ('' for the first row): how a stopped command resumes. */
  after?: string | undefined;
  size: number;
}

/**
 * Pages of rows until none are left. Rows added behind the cursor are not seen. A command checks
 * its stop signal at the top of its loop, so it stops only with a page still to do.
 */
export async function* pagesOf(store: WrappedKeyStore, o: WalkOptions): AsyncGenerator<KeyRecord[]> {
  for (let after = o.after ?? ''; ; ) {
    const page = await store.listKeys(after, o.size);
    if (page.length === 0) return;
    yield page;
    after = page.at(-1)!.keyId;
  }
}

/** How many rows follow `after` (a resumed command's total); reads them, as the store counts only all. */
export async function countAfter(store: WrappedKeyStore, after: string): Promise<number> {
  let n = 0;
  for await (const page of pagesOf(store, { after, size: 1000 })) n += page.length;
  return n;
}
