// The fault suite's and the soak's bookkeeping: feeds keygens (some twice) and, once a key is
// reported, signs with it; remembers every answer any job server incarnation recorded; and checks
// the invariants faults must not break: one key per keyId, every signature verifies against the
// key first reported, and no error other than the retryable ones the fault explains.
import { constants, createPublicKey, randomBytes, verify } from 'node:crypto';
import type { AnswerRecord, JobServer, JobView } from '../job-server.ts';

export const WRAPPED_ALGORITHMS = ['ecdsa-secp256k1', 'ecdsa-p256', 'rsa-2048'] as const;
export type SoakAlgorithm = 'ecdsa-secp256k1' | 'ecdsa-p256' | 'ecdsa-p384' | 'eddsa-ed25519' | 'rsa-2048';

/** Where jobs go: the in-process job server, or a job server process through its admin port. */
export interface JobSink {
  enqueue(kind: 'keygen' | 'sign', input: Record<string, unknown>, id: string): Promise<void> | void;
  /** The current views of these jobs (absent ones are left out). */
  views(ids: string[]): Promise<Map<string, JobView>> | Map<string, JobView>;
}

/** The in-process job server as a sink. */
export function serverSink(server: Pick<JobServer, 'enqueue' | 'job'>): JobSink {
  return {
    enqueue: (kind, input, id) => void server.enqueue(kind, input, { id }),
    views: (ids) => new Map(ids.flatMap((id) => {
      const view = server.job(id);
      return view ? [[id, view] as const] : [];
    })),
  };
}

export interface LedgerOptions {
  /** Prefix of keyIds and job ids: unique per run. */
  prefix: string;
  algorithms: readonly SoakAlgorithm[];
  signsPerKey: number;
  /** Every n-th key gets a second keygen job at once, racing the first (0: never). */
  duplicateEvery: number;
  /** Error codes the fault under test explains; such a job is enqueued again as a new job. */
  retryCodes?: readonly string[];
}

export interface KeyReport {
  algorithm: SoakAlgorithm;
  /** SubjectPublicKeyInfo, base64, from the first keygen result accepted. */
  publicKeyDer: string;
}

interface Tracked {
  id: string;
  kind: 'keygen' | 'sign';
  keyId: string;
  input: Record<string, unknown>;
  completed: boolean;
  result?: unknown;
  error?: { code: string; message: string; retryable: boolean };
  /** Answers and leases by `${incarnation}:${index}`: a restarted server starts its lists afresh. */
  answers: Map<string, AnswerRecord>;
  leases: Set<string>;
  maxAttempt: number;
}

export interface LedgerFigures {
  keys: number;
  jobs: number;
  keygenJobs: number;
  signJobs: number;
  completed: number;
  /** Jobs leased more than once (a driver died or was cut off holding them). */
  redelivered: number;
  maxAttempt: number;
  answers: number;
  /** Answers the server refused (409: lease lost or job already done). */
  refusedAnswers: number;
  signaturesVerified: number;
  /** Jobs that ended in an error the fault explains, by code (each was enqueued again). */
  retriedByCode: Record<string, number>;
}

export class Ledger {
  private readonly jobs = new Map<string, Tracked>();
  private readonly keys = new Map<string, { algorithm: SoakAlgorithm; report?: KeyReport; signed: boolean }>();
  private nextKey = 0;
  private nextJob = 0;
  private incarnation = 0;
  private readonly problems: string[] = [];
  private readonly retried: Record<string, number> = {};
  /** Retries held back while the fault lasts (see holdRetries). */
  private held: Tracked[] | undefined;

  private sink: JobSink;
  private readonly opts: LedgerOptions;

  // Plain fields, not parameter properties: Node runs this file with type stripping only.
  constructor(sink: JobSink, opts: LedgerOptions) {
    this.sink = sink;
    this.opts = opts;
  }

  /** The job server was restarted: later answers and leases are new records, not repeats. */
  newIncarnation(sink: JobSink): void {
    this.sink = sink;
    this.incarnation++;
  }

  /** From now on, jobs to retry wait until releaseRetries (no retry storm while the fault lasts). */
  holdRetries(): void {
    this.held ??= [];
  }

  /** Enqueues the retries held back, and retries at once from now on. */
  async releaseRetries(): Promise<void> {
    const held = this.held ?? [];
    this.held = undefined;
    for (const job of held) await this.add(job.kind, job.keyId, job.input);
  }

  /** A new keyId with its keygen job (and, every n-th, a second one racing it). */
  async addKey(): Promise<string> {
    const n = this.nextKey++;
    const keyId = `${this.opts.prefix}k${n}`;
    const algorithm = this.opts.algorithms[n % this.opts.algorithms.length]!;
    this.keys.set(keyId, { algorithm, signed: false });
    await this.add('keygen', keyId, { keyId, algorithm });
    if (this.opts.duplicateEvery > 0 && n % this.opts.duplicateEvery === 0) await this.add('keygen', keyId, { keyId, algorithm });
    return keyId;
  }

  /** `count` keygen jobs for one keyId, enqueued at once so that drivers race for it. */
  async addRacingKeygens(keyId: string, algorithm: SoakAlgorithm, count: number): Promise<void> {
    this.keys.set(keyId, { algorithm, signed: false });
    for (let i = 0; i < count; i++) await this.add('keygen', keyId, { keyId, algorithm });
  }

  private async add(kind: 'keygen' | 'sign', keyId: string, input: Record<string, unknown>): Promise<void> {
    const id = `${this.opts.prefix}j${this.nextJob++}`;
    this.jobs.set(id, { id, kind, keyId, input, completed: false, answers: new Map(), leases: new Set(), maxAttempt: 1 });
    await this.sink.enqueue(kind, input, id);
  }

  /** Reads the unfinished jobs (or all, for the final check), and enqueues what follows from them. */
  async sync(all = false): Promise<void> {
    const ids = [...this.jobs.values()].filter((j) => all || !j.completed).map((j) => j.id);
    const views = await this.sink.views(ids);
    for (const id of ids) {
      const view = views.get(id);
      if (view) await this.absorb(this.jobs.get(id)!, view);
    }
  }

  private async absorb(job: Tracked, view: JobView): Promise<void> {
    view.answers.forEach((a, i) => job.answers.set(`${this.incarnation}:${i}`, a));
    view.leases.forEach((_, i) => job.leases.add(`${this.incarnation}:${i}`));
    job.maxAttempt = Math.max(job.maxAttempt, ...view.leases.map((l) => l.attempt));
    if (job.completed || view.state !== 'completed') return;
    job.completed = true;
    job.result = view.result;
    job.error = view.error as Tracked['error'];
    if (job.error) {
      const { code, retryable } = job.error;
      if (this.opts.retryCodes?.includes(code) && retryable === true) {
        this.retried[code] = (this.retried[code] ?? 0) + 1;
        if (this.held) this.held.push(job);
        else await this.add(job.kind, job.keyId, job.input);
      } else {
        this.problems.push(`${job.kind} ${job.id} (${job.keyId}) ended in ${code}: ${job.error.message}`);
      }
      return;
    }
    if (job.kind !== 'keygen') return;
    const key = this.keys.get(job.keyId)!;
    const output = job.result as { publicKeyDer?: string; algorithm?: string };
    if (key.report === undefined && typeof output.publicKeyDer === 'string') key.report = { algorithm: key.algorithm, publicKeyDer: output.publicKeyDer };
    if (!key.signed && key.report) {
      key.signed = true;
      for (let i = 0; i < this.opts.signsPerKey; i++) await this.add('sign', job.keyId, signInput(key.algorithm, job.keyId, i));
    }
  }

  /** True when every job has ended (after sync). */
  get settled(): boolean {
    for (const j of this.jobs.values()) if (!j.completed) return false;
    return true;
  }

  /** Jobs enqueued and not seen completed: what a persistent queue would still hold. */
  unfinished(): Array<{ id: string; kind: string; input: Record<string, unknown> }> {
    return [...this.jobs.values()].filter((j) => !j.completed).map(({ id, kind, input }) => ({ id, kind, input }));
  }

  /** Jobs seen completed so far. */
  completedCount(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.completed) n++;
    return n;
  }

  /** The key first reported for each keyId that got one. */
  reports(): Map<string, KeyReport> {
    const out = new Map<string, KeyReport>();
    for (const [keyId, k] of this.keys) if (k.report) out.set(keyId, k.report);
    return out;
  }

  /**
   * Every violation found: errors the fault does not explain, jobs not ended, a keyId answered
   * with two keys, a signature (any answer posted, accepted or refused) that does not verify.
   */
  check(): { problems: string[]; figures: LedgerFigures } {
    const problems = [...this.problems];
    let signaturesVerified = 0;
    let answers = 0;
    let refusedAnswers = 0;
    if (this.held?.length) problems.push(`${this.held.length} retries still held back`);
    for (const job of this.jobs.values()) {
      if (!job.completed) problems.push(`${job.kind} ${job.id} (${job.keyId}) never ended`);
      const key = this.keys.get(job.keyId)!;
      for (const a of job.answers.values()) {
        answers++;
        if (a.status === 409) refusedAnswers++;
        if (a.type !== 'result') continue;
        const output = (a.body as { output?: Record<string, unknown> } | undefined)?.output ?? {};
        if (!key.report) {
          problems.push(`${job.kind} ${job.id}: a result for ${job.keyId}, whose key was never reported`);
          continue;
        }
        if (job.kind === 'keygen') {
          if (output.publicKeyDer !== key.report.publicKeyDer || output.algorithm !== key.algorithm) {
            problems.push(`keygen ${job.id}: ${job.keyId} answered with another key (${String(output.publicKeyDer).slice(0, 40)}… vs ${key.report.publicKeyDer.slice(0, 40)}…, answer ${a.status} by ${a.by})`);
          }
        } else if (verifySignature(key.report, job.input, output)) {
          signaturesVerified++;
        } else {
          problems.push(`sign ${job.id}: the signature by ${job.keyId} (answer ${a.status} by ${a.by}) does not verify against the key first reported`);
        }
      }
    }
    const all = [...this.jobs.values()];
    const figures: LedgerFigures = {
      keys: this.keys.size,
      jobs: all.length,
      keygenJobs: all.filter((j) => j.kind === 'keygen').length,
      signJobs: all.filter((j) => j.kind === 'sign').length,
      completed: all.filter((j) => j.completed).length,
      redelivered: all.filter((j) => j.leases.size > 1).length,
      maxAttempt: Math.max(1, ...all.map((j) => j.maxAttempt)),
      answers,
      refusedAnswers,
      signaturesVerified,
      retriedByCode: { ...this.retried },
    };
    return { problems, figures };
  }
}

/** A sign input for the key's algorithm over 32 random bytes; RSA alternates PSS and PKCS#1 v1.5. */
export function signInput(algorithm: SoakAlgorithm, keyId: string, n: number): Record<string, unknown> {
  const data = randomBytes(32).toString('hex');
  if (algorithm === 'eddsa-ed25519') return { keyId, data, encoding: 'message' };
  if (algorithm.startsWith('rsa-')) return { keyId, data, encoding: 'message', hash: 'sha256', padding: n % 2 === 0 ? 'pss' : 'pkcs1' };
  return { keyId, data, encoding: 'message', hash: 'sha256' };
}

/** Checks a sign output with node:crypto (OpenSSL) against a reported SubjectPublicKeyInfo. */
export function verifySignature(key: KeyReport, input: Record<string, unknown>, output: Record<string, unknown>): boolean {
  try {
    const publicKey = createPublicKey({ key: Buffer.from(key.publicKeyDer, 'base64'), format: 'der', type: 'spki' });
    const data = Buffer.from(String(input.data), 'hex');
    if (key.algorithm === 'eddsa-ed25519') return verify(null, data, publicKey, Buffer.from(String(output.signature), 'hex'));
    if (key.algorithm.startsWith('rsa-')) {
      const padding = input.padding === 'pkcs1' ? { padding: constants.RSA_PKCS1_PADDING } : { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
      return verify('sha256', data, { key: publicKey, ...padding }, Buffer.from(String(output.signature), 'hex'));
    }
    return verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, Buffer.from(String(output.der), 'hex'));
  } catch {
    return false;
  }
}
