// The job server's in-memory queue: jobs, leases that expire back into the queue with
// attempt + 1, and the record of every lease and answer that tests inspect.
import { randomBytes } from 'node:crypto';

export type JobState = 'queued' | 'leased' | 'completed';

/** Who made a call: the client certificate's subject CN and the User-Agent it sent. */
export interface Caller {
  by: string;
  userAgent: string;
}

export interface LeaseRecord extends Caller {
  attempt: number;
  at: string;
  expiresAt: string;
}

export interface AnswerRecord extends Caller {
  type: 'result' | 'error';
  /** What the server replied: 204 accepted, 409 lease not held, 400 malformed, 404 unknown job. */
  status: 204 | 400 | 404 | 409;
  at: string;
  /** The parsed JSON body, or the raw text when it was not JSON. */
  body: unknown;
  reason?: string;
}

/** A snapshot of one job; `attempt` is the current lease's, or the next one's while queued. */
export interface JobView {
  id: string;
  kind: unknown;
  input: unknown;
  state: JobState;
  attempt: number;
  leasedBy?: string;
  leaseExpiresAt?: string;
  result?: unknown;
  error?: unknown;
  leases: LeaseRecord[];
  answers: AnswerRecord[];
}

interface Job extends Omit<JobView, 'leases' | 'answers'> {
  seq: number;
  /** The job as enqueued; a plain object gets id/attempt/leaseExpiresAt added where absent. */
  body: unknown;
  leaseTimer?: NodeJS.Timeout;
  leases: LeaseRecord[];
  answers: AnswerRecord[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class JobQueue {
  readonly #leaseMs: number;
  readonly #jobs = new Map<string, Job>();
  /** Queued jobs, oldest enqueued first: an expired job goes back to its old place. */
  #queue: Job[] = [];
  #seq = 0;
  #onChange: (job: JobView) => void;

  /** `onChange` hears of every new, re-queued, leased and completed job. */
  constructor(leaseSeconds: number, onChange: (job: JobView) => void) {
    this.#leaseMs = leaseSeconds * 1000;
    this.#onChange = onChange;
  }

  enqueue(kind: string, input: unknown, opts: { id?: string } = {}): string {
    return this.enqueueRaw({ ...(opts.id === undefined ? {} : { id: opts.id }), kind, input });
  }

  /** Any JSON as the job, for malformed-job tests: only a non-empty string `id` names the job here. */
  enqueueRaw(body: unknown): string {
    const given = isObject(body) && typeof body.id === 'string' && body.id !== '' ? body.id : undefined;
    const id = given ?? `j_${randomBytes(12).toString('hex')}`;
    if (this.#jobs.has(id)) throw new Error(`job ${id} already exists`);
    const obj = isObject(body) ? body : {};
    const job: Job = {
      id, seq: this.#seq++, body: structuredClone(body), kind: obj.kind, input: obj.input,
      state: 'queued', attempt: 1, leases: [], answers: [],
    };
    this.#jobs.set(id, job);
    this.#queue.push(job);
    this.#onChange(this.#view(job));
    return id;
  }

  get(id: string): JobView | undefined {
    const job = this.#jobs.get(id);
    return job && this.#view(job);
  }

  all(): JobView[] {
    return [...this.#jobs.values()].map((job) => this.#view(job));
  }

  counts(): Record<JobState, number> {
    const counts: Record<JobState, number> = { queued: 0, leased: 0, completed: 0 };
    for (const job of this.#jobs.values()) counts[job.state]++;
    return counts;
  }

  get queuedCount(): number {
    return this.#queue.length;
  }

  /** Leases the oldest queued job to `caller`; returns the wire body, or undefined if none. */
  lease(caller: Caller): unknown {
    const job = this.#queue.shift();
    if (!job) return undefined;
    const now = Date.now();
    const expiresAt = new Date(now + this.#leaseMs).toISOString();
    Object.assign(job, { state: 'leased', leasedBy: caller.by, leaseExpiresAt: expiresAt });
    job.leases.push({ ...caller, attempt: job.attempt, at: new Date(now).toISOString(), expiresAt });
    job.leaseTimer = setTimeout(() => this.#expire(job), this.#leaseMs).unref();
    this.#onChange(this.#view(job));
    if (!isObject(job.body)) return job.body;
    // The protocol's field order; the job's own fields win, and undefined ones vanish in JSON.
    return { id: job.id, kind: undefined, attempt: job.attempt, leaseExpiresAt: expiresAt, input: undefined, ...job.body };
  }

  /**
   * Records a result or error and says whether it was accepted. The protocol carries no lease
   * token, so the lease is held by the client certificate that took it, until it expires.
   * Drivers sharing one certificate are therefore one holder to this server.
   */
  answer(id: string, caller: Caller, type: AnswerRecord['type'], body: unknown, malformed?: string): AnswerRecord | undefined {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    if (job.state === 'leased' && Date.parse(job.leaseExpiresAt!) <= Date.now()) this.#expire(job);
    let status: 204 | 400 | 409 = 204;
    let reason = malformed;
    if (reason !== undefined) status = 400;
    else if (job.state === 'completed') [status, reason] = [409, 'job already completed'];
    else if (job.state === 'queued') [status, reason] = [409, job.leases.length ? 'lease expired' : 'job not leased'];
    else if (job.leasedBy !== caller.by) [status, reason] = [409, `lease held by ${job.leasedBy}`];
    const record: AnswerRecord = { ...caller, type, status, at: new Date().toISOString(), body, ...(reason === undefined ? {} : { reason }) };
    job.answers.push(record);
    if (status === 204) {
      clearTimeout(job.leaseTimer);
      job.state = 'completed';
      if (type === 'result') job.result = (body as { output: unknown }).output;
      else job.error = (body as { error: unknown }).error;
      this.#onChange(this.#view(job));
    }
    return record;
  }

  /** Stops the lease timers so that a closed server leaves nothing scheduled. */
  stop(): void {
    for (const job of this.#jobs.values()) clearTimeout(job.leaseTimer);
  }

  #expire(job: Job): void {
    if (job.state !== 'leased') return;
    clearTimeout(job.leaseTimer);
    job.state = 'queued';
    job.attempt += 1;
    delete job.leaseExpiresAt;
    const at = this.#queue.findIndex((other) => other.seq > job.seq);
    this.#queue.splice(at === -1 ? this.#queue.length : at, 0, job);
    this.#onChange(this.#view(job));
  }

  #view(job: Job): JobView {
    const { id, kind, state, attempt, leasedBy, leaseExpiresAt, input, result, error, leases, answers } = job;
    return structuredClone({ id, kind, state, attempt, leasedBy, leaseExpiresAt, input, result, error, leases, answers });
  }
}
