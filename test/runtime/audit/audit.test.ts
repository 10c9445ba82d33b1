// The audit trail on the real token and both real databases: records committed in groups and
// chained, sealed inside the HSM; and every way of tampering with them that `verifyAudit` must
// name — an edited, a deleted and a re-ordered record, and a chain recomputed without the HSM.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditHash, GENESIS, type AuditRecord } from '../../../runtime/audit/record.js';
import { AuditTrail, auditEntryFor, type JobAuditEntry } from '../../../runtime/audit/trail.js';
import { verifyAudit } from '../../../runtime/audit/verify.js';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import { openPostgresStore } from '../../../runtime/store/postgres.js';
import { openSqliteStore } from '../../../runtime/store/sqlite.js';
import type { AuditLog, WrappedKeyStore } from '../../../runtime/store/store.js';
import { openTestHsm, silentLog } from '../../support/hsm.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { postgresTamper, sqliteTamper, type Tamper } from '../../support/tamper.js';

const identity = { subject: 'CN=driver-a, O=test', fingerprint: 'AA:BB' };

function entry(i: number, keyId = `key-${i % 3}`): JobAuditEntry {
  return auditEntryFor({ id: `job-${i}`, attempt: 1, kind: 'sign' }, { keyId, algorithm: 'ecdsa-secp256k1', signed: Buffer.from(`message ${i}`) }, i % 5 === 4 ? 'KEY_NOT_FOUND' : undefined);
}


interface Harness {
  open(): Promise<WrappedKeyStore>;
  tamper: Tamper;
}

const dir = mkdtempSync(join(tmpdir(), 'hsm-driver-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pgUrl = usePostgresDatabase();

const harnesses: Record<'sqlite' | 'postgres', Harness> = {
  sqlite: {
    open: () => openSqliteStore(join(dir, 'audit.db')),
    tamper: sqliteTamper(join(dir, 'audit.db')),
  },
  postgres: {
    open: () => openPostgresStore(pgUrl(), { poolSize: 4 }),
    tamper: postgresTamper(pgUrl),
  },
};

let hsm: Hsm;
beforeAll(async () => {
  hsm = await openTestHsm();
});
afterAll(async () => {
  await hsm?.close();
});

/** A fresh chain of `n` records, appended concurrently (so they commit in groups). */
async function chainOf(store: WrappedKeyStore, n: number): Promise<AuditTrail> {
  const trail = new AuditTrail(store.audit, hsm, identity, silentLog);
  await Promise.all(Array.from({ length: n }, (_, i) => trail.append(entry(i))));
  return trail;
}

async function reportFor(store: WrappedKeyStore, chain: string) {
  const reports = await verifyAudit(store.audit, hsm);
  return reports.find((r) => r.chain === chain)!;
}

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`audit trail on ${kind}`, () => {
    const h = harnesses[kind];

    it('commits every record, chained from genesis and sealed in the HSM, and verifies them all', async () => {
      const store = await h.open();
      try {
        const trail = await chainOf(store, 40);
        const records = await store.audit.read({ chain: trail.chain, afterSeq: 0, limit: 100 });
        expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
        expect(records[0]!.prevHash).toEqual(GENESIS);
        for (let i = 1; i < records.length; i++) expect(records[i]!.prevHash).toEqual(records[i - 1]!.hash);
        for (const r of records) {
          expect(auditHash(r)).toEqual(r.hash);
          expect(await hsm.verifySeal(Buffer.concat([Buffer.from('hsm-driver audit v1 seal\n'), r.hash]), r.seal!)).toBe(true);
        }
        // What the handler noted, and what the trail added, made it into the row.
        const first = records.find((r) => r.jobId === 'job-4')!;
        expect(first).toMatchObject({ kind: 'sign', keyId: 'key-1', algorithm: 'ecdsa-secp256k1', outcome: 'error', code: 'KEY_NOT_FOUND', driverSubject: identity.subject, driverFingerprint: identity.fingerprint });
        expect(first.dataSha256).toEqual(createHash('sha256').update('message 4').digest());
        expect(trail.committed).toBe(40);
        expect(trail.unsealed).toBe(0);
        const report = await reportFor(store, trail.chain);
        expect(report).toMatchObject({ good: 40, head: { seq: 40 } });
        expect(report.firstBad).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it('names an edited record', async () => {
      const store = await h.open();
      try {
        const { chain } = await chainOf(store, 10);
        await h.tamper('UPDATE audit_records SET key_id = $1 WHERE chain = $2 AND seq = 6', ['someone-else', chain]);
        expect((await reportFor(store, chain)).firstBad).toMatchObject({ seq: 6, jobId: expect.any(String), reason: expect.stringContaining('edited') });
      } finally {
        await store.close();
      }
    });

    it('names the record after a deleted one', async () => {
      const store = await h.open();
      try {
        const { chain } = await chainOf(store, 10);
        await h.tamper('DELETE FROM audit_records WHERE chain = $1 AND seq = 4', [chain]);
        const report = await reportFor(store, chain);
        expect(report.good).toBe(3);
        expect(report.firstBad).toMatchObject({ seq: 5, reason: expect.stringContaining('missing') });
      } finally {
        await store.close();
      }
    });

    it('names a re-ordered record', async () => {
      const store = await h.open();
      try {
        const { chain } = await chainOf(store, 10);
        // Swap records 3 and 7 by their positions in the chain.
        await h.tamper('UPDATE audit_records SET seq = -3 WHERE chain = $1 AND seq = 3', [chain]);
        await h.tamper('UPDATE audit_records SET seq = 3 WHERE chain = $1 AND seq = 7', [chain]);
        await h.tamper('UPDATE audit_records SET seq = 7 WHERE chain = $1 AND seq = -3', [chain]);
        expect((await reportFor(store, chain)).firstBad).toMatchObject({ seq: 3, reason: expect.stringMatching(/re-ordered|edited/) });
      } finally {
        await store.close();
      }
    });

    it('names a record whose chain was recomputed without the HSM: hashes agree, the seal does not', async () => {
      const store = await h.open();
      try {
        const { chain } = await chainOf(store, 10);
        const records = await store.audit.read({ chain, afterSeq: 0, limit: 100 });
        // The attacker edits record 5 and recomputes every hash from there: only the seals are out of reach.
        let prev = records[3]!.hash;
        for (const r of records.slice(4)) {
          const forged: AuditRecord = { ...r, outcome: 'ok', code: null, keyId: r.seq === 5 ? 'attacker-key' : r.keyId, prevHash: prev };
          forged.hash = auditHash(forged);
          await h.tamper('UPDATE audit_records SET key_id = $1, outcome = $2, code = NULL, prev_hash = $3, hash = $4 WHERE chain = $5 AND seq = $6', [forged.keyId!, 'ok', forged.prevHash, forged.hash, chain, r.seq]);
          prev = forged.hash;
        }
        const after = await store.audit.read({ chain, afterSeq: 0, limit: 100 });
        for (const r of after) expect(auditHash(r)).toEqual(r.hash);
        expect((await reportFor(store, chain)).firstBad).toMatchObject({ seq: 5, reason: expect.stringContaining('seal does not verify') });
      } finally {
        await store.close();
      }
    });

    it('continues its chain from what the database holds after a commit that failed after landing', async () => {
      const store = await h.open();
      try {
        // Fault injected on our side of the store (a real database cannot be made to lose the
        // reply to a COMMIT on demand): the first append commits, then reports failure.
        let failOnce = true;
        const lying: AuditLog = {
          ...store.audit,
          append: async (records) => {
            await store.audit.append(records);
            if (failOnce) {
              failOnce = false;
              throw new Error('connection lost after COMMIT');
            }
          },
          head: (chain) => store.audit.head(chain),
        };
        const trail = new AuditTrail(lying, hsm, identity, silentLog);
        await expect(trail.append(entry(1))).rejects.toThrow('connection lost');
        await trail.append(entry(2));
        await trail.append(entry(3));
        const report = await reportFor(store, trail.chain);
        expect(report).toMatchObject({ good: 3 });
        expect(report.firstBad).toBeUndefined();
      } finally {
        await store.close();
      }
    });
  });
}

describe('audit trail without an integrity key on the token', () => {
  it('commits records unsealed, counts them, and verify names them', async () => {
    const noKey = await openTestHsm({ 'integrity-key-label': 'no-such-integrity-key' });
    const store = await harnesses.sqlite.open();
    try {
      const trail = new AuditTrail(store.audit, noKey, identity, silentLog);
      await Promise.all([trail.append(entry(1)), trail.append(entry(2))]);
      expect(trail.unsealed).toBe(2);
      const report = (await verifyAudit(store.audit, hsm)).find((r) => r.chain === trail.chain)!;
      expect(report.firstBad).toMatchObject({ seq: 1, reason: expect.stringContaining('not sealed') });
    } finally {
      await store.close();
      await noKey.close();
    }
  });
});
