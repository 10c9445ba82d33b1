// Appends this driver's audit records: one chain per driver process, sealed in the HSM, and
// committed in small groups. A job's answer waits for its record's commit; while one group is
// being sealed and committed the next one gathers, so the cost per record falls as load rises.
import { createHash, randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { Logger } from 'pino';
import type { AuditFacts } from '../context.js';
import { IntegrityKeyMissingError } from '../hsm/integrity-key.js';
import type { AuditLog } from '../store/store.js';
import { auditHash, GENESIS, sealInput, type AuditEntry, type AuditRecord } from './record.js';

/** The HSM side: seals made inside the HSM under the integrity key. */
export interface Sealer {
  sealAll(inputs: readonly Buffer[]): Promise<Buffer[]>;
}

/** Who this driver is, as recorded in every record. */
export interface AuditIdentity {
  subject: string;
  fingerprint: string;
}

// Bounds one transaction (and one PostgreSQL statement's parameters: 16 per record).
const MAX_GROUP = 256;

/** An entry before the trail adds who wrote it. */
export type JobAuditEntry = Omit<AuditEntry, 'driverSubject' | 'driverFingerprint'>;

interface Waiting {
  entry: JobAuditEntry;
  done: (err?: unknown) => void;
}

export class AuditTrail {
  readonly chain = randomUUID();
  private head: { seq: number; hash: Buffer } | undefined = { seq: 0, hash: GENESIS };
  private waiting: Waiting[] = [];
  private flushing = false;
  private unsealedWarned = false;
  /** Records committed without a seal because the token has no integrity key. */
  unsealed = 0;
  committed = 0;

  constructor(
    private readonly log: AuditLog,
    private readonly sealer: Sealer,
    private readonly identity: AuditIdentity,
    private readonly logger: Logger,
  ) {}

  /** Resolves once the record is committed; rejects with the store's or HSM's error if it could not be. */
  append(entry: JobAuditEntry): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ entry, done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.waiting.length > 0) {
      const group = this.waiting.splice(0, MAX_GROUP);
      try {
        await this.commit(group.map((w) => w.entry));
        for (const w of group) w.done();
      } catch (err) {
        for (const w of group) w.done(err);
      }
    }
    this.flushing = false;
  }

  private async commit(entries: ReadonlyArray<JobAuditEntry>): Promise<void> {
    await this.commitWith(async (recordsFor) => this.log.append(await recordsFor(entries)));
  }

  /**
   * For a caller that commits records in a transaction of its own, together with what they
   * record (`keys rewrap`: a row and its record, or neither). `write` asks for the records of the
   * entries it decides on, chained and sealed, and commits them. Not to be run beside append().
   */
  async commitWith<T>(write: (recordsFor: (entries: readonly JobAuditEntry[]) => Promise<AuditRecord[]>) => Promise<T>): Promise<T> {
    // After a failed commit we cannot know whether it landed (a connection lost after COMMIT):
    // continue from what the database holds, never from what we hoped it holds.
    const head = (this.head ??= (await this.log.head(this.chain)) ?? { seq: 0, hash: GENESIS });
    let made: AuditRecord[] = [];
    const recordsFor = async (entries: readonly JobAuditEntry[]): Promise<AuditRecord[]> => {
      let { seq, hash: prevHash } = head;
      const records: AuditRecord[] = entries.map((entry) => {
        const unsealed = { ...entry, driverSubject: this.identity.subject, driverFingerprint: this.identity.fingerprint, chain: this.chain, seq: ++seq, prevHash };
        const hash = auditHash(unsealed);
        prevHash = hash;
        return { ...unsealed, hash, seal: null };
      });
      const seals = await this.seal(records.map((r) => sealInput(r.hash)));
      seals?.forEach((seal, i) => (records[i]!.seal = seal));
      made = records;
      return records;
    };
    let result: T;
    try {
      result = await write(recordsFor);
    } catch (err) {
      this.head = undefined;
      throw err;
    }
    const last = made.at(-1);
    if (last) this.head = { seq: last.seq, hash: last.hash };
    this.committed += made.length;
    this.unsealed += made.filter((r) => r.seal === null).length;
    return result;
  }

  /** The seals, or undefined when the token has no integrity key (the driver warned at start). */
  private async seal(inputs: Buffer[]): Promise<Buffer[] | undefined> {
    try {
      return await this.sealer.sealAll(inputs);
    } catch (err) {
      if (!(err instanceof IntegrityKeyMissingError)) throw err;
      if (!this.unsealedWarned) this.logger.warn({ reason: err.message }, 'INTEGRITY KEY MISSING: audit records are committed unsealed; audit verify will report them');
      this.unsealedWarned = true;
      return undefined;
    }
  }
}

/** The trail of a command run by hand (one-shot jobs, keys commands): its own chain, the local user. */
export function localAuditTrail(log: AuditLog, sealer: Sealer, logger: Logger): AuditTrail {
  return new AuditTrail(log, sealer, { subject: `local user ${userInfo().username}@${hostname()}`, fingerprint: '' }, logger);
}

/** Job kinds that leave an audit record: the ones that make or use a key. */
export const AUDITED_KINDS: ReadonlySet<unknown> = new Set(['keygen', 'sign']);

/** A job's audit entry from what the dispatcher knows and what the handler noted. */
export function auditEntryFor(job: { id: string; attempt: number; kind: string }, facts: AuditFacts, code: string | undefined): JobAuditEntry {
  return {
    at: new Date(),
    jobId: job.id,
    attempt: job.attempt,
    kind: job.kind,
    keyId: facts.keyId ?? null,
    algorithm: facts.algorithm ?? null,
    dataSha256: facts.signed ? createHash('sha256').update(facts.signed).digest() : null,
    outcome: code === undefined ? 'ok' : 'error',
    code: code ?? null,
  };
}
