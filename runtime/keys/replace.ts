// Replaces rows together with their audit records, in one transaction: what `keys seal` and
// `keys rewrap` do to each page. A row another process changed since it was read is left alone.
import type { AuditTrail } from '../audit/trail.js';
import type { KeyRecord, WrappedKeyStore } from '../store/store.js';

/** Returns the `next` rows that were written (each with one `kind` record in the audit trail). */
export async function replaceWithAudit(store: WrappedKeyStore, audit: AuditTrail, kind: string, changes: ReadonlyArray<{ expected: KeyRecord; next: KeyRecord }>): Promise<KeyRecord[]> {
  if (changes.length === 0) return [];
  return audit.commitWith((recordsFor) =>
    store.replaceKeysWithAudit(changes, (rows) =>
      recordsFor(rows.map((r) => ({ at: new Date(), jobId: kind, attempt: 1, kind, keyId: r.keyId, algorithm: r.algorithm, dataSha256: null, outcome: 'ok', code: null }))),
    ),
  );
}
