// The /v1 side of the job server, to the letter of PROTOCOL.md: long polls that lease jobs,
// results and errors, and the bookkeeping tests read (who called, which User-Agent, what wait).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AnswerRecord, Caller, JobQueue } from './queue.js';

export interface PollRecord extends Caller {
  at: string;
  /** `wait` as the client sent it, and the hold the server computed from it (capped). */
  requestedWait: string | null;
  wait: number;
  /** 200, 204 or the failure status; 0 while the poll is still held. */
  status: number;
  jobId?: string;
}

export interface ApiCounters {
  polls: number;
  leases: number;
  noJob: number;
  injectedFailures: number;
  accepted: number;
  conflicts: number;
  badRequests: number;
  notFound: number;
  userAgents: string[];
}

/** PROTOCOL.md's error codes and whether each is retryable. */
const ERROR_CODES: Readonly<Record<string, boolean>> = {
  INVALID_INPUT: false, UNSUPPORTED_KIND: false, UNSUPPORTED_ALGORITHM: false, KEY_NOT_FOUND: false,
  KEY_EXISTS: false, KEY_INTEGRITY: false, HSM_UNAVAILABLE: true, DATABASE_UNAVAILABLE: true, INTERNAL: true,
};
const MAX_BODY = 1 << 20;
/** Polls and stray answers kept, oldest dropped first, so a long demo run stays bounded. */
const MAX_RECORDS = 10_000;
const ANSWER_PATH = /^\/v1\/jobs\/([^/]+)\/(result|error)$/;

/** An answer for a job id the server does not know (404), kept so a test can see what was sent. */
export interface StrayAnswer extends AnswerRecord {
  id: string;
}

interface Waiter {
  caller: Caller;
  res: ServerResponse;
  record: PollRecord;
  timer: NodeJS.Timeout;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (res.writableEnded || res.destroyed) return;
  if (body === undefined) res.writeHead(status, headers).end();
  else res.writeHead(status, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** Says what is wrong with a result or error body, or undefined when it follows the protocol. */
function malformed(type: 'result' | 'error', contentType: string | undefined, text: string): [string | undefined, unknown] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return ['body is not JSON', text];
  }
  if (!/^application\/json\s*(;|$)/i.test(contentType ?? '')) return ['Content-Type must be application/json', body];
  if (!isObject(body)) return ['body must be a JSON object', body];
  if (type === 'result') return [isObject(body.output) ? undefined : '"output" must be an object', body];
  const e = body.error;
  if (!isObject(e)) return ['"error" must be an object', body];
  if (typeof e.code !== 'string' || !(e.code in ERROR_CODES)) return [`unknown error code ${JSON.stringify(e.code)}`, body];
  if (typeof e.message !== 'string') return ['"error.message" must be a string', body];
  if (e.retryable !== ERROR_CODES[e.code]) return [`"error.retryable" must be ${ERROR_CODES[e.code]} for ${e.code}`, body];
  return [undefined, body];
}

export class JobApi {
  readonly counters: ApiCounters = { polls: 0, leases: 0, noJob: 0, injectedFailures: 0, accepted: 0, conflicts: 0, badRequests: 0, notFound: 0, userAgents: [] };
  readonly #queue: JobQueue;
  readonly #maxWaitSeconds: number;
  readonly #requireUserAgent: boolean;
  #waiters: Waiter[] = [];
  #polls: PollRecord[] = [];
  #strays: StrayAnswer[] = [];
  #failures = { remaining: 0, status: 503 };
  #closing = false;

  constructor(queue: JobQueue, options: { maxWaitSeconds: number; requireUserAgent: boolean }) {
    this.#queue = queue;
    this.#maxWaitSeconds = options.maxWaitSeconds;
    this.#requireUserAgent = options.requireUserAgent;
  }

  get openPolls(): number {
    return this.#waiters.length;
  }

  polls(): PollRecord[] {
    return structuredClone(this.#polls);
  }

  strayAnswers(): StrayAnswer[] {
    return structuredClone(this.#strays);
  }

  failNextPolls(n: number, status: number): void {
    this.#failures = { remaining: n, status };
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://job-server');
    const cn = (req.socket as TLSSocket).getPeerCertificate().subject?.CN as string | string[] | undefined;
    const caller: Caller = { by: [cn ?? ''].flat().join(','), userAgent: req.headers['user-agent'] ?? '' };
    if (!this.counters.userAgents.includes(caller.userAgent)) this.counters.userAgents.push(caller.userAgent);
    if (this.#requireUserAgent && !caller.userAgent.startsWith('hsm-driver/')) {
      this.counters.badRequests++;
      return send(res, 400, { error: 'User-Agent must start with hsm-driver/' });
    }
    const answer = ANSWER_PATH.exec(url.pathname);
    const allow = url.pathname === '/v1/jobs/next' ? 'GET' : answer ? 'POST' : undefined;
    if (allow === undefined) return send(res, 404, { error: 'no such endpoint' });
    if (req.method !== allow) return send(res, 405, { error: 'method not allowed' }, { allow });
    if (answer) void this.#answer(req, res, caller, answer[1]!, answer[2] as AnswerRecord['type']);
    else this.#poll(url, caller, res);
  }

  /** Hands the oldest queued jobs to the oldest held polls; the queue calls it on every change. */
  dispatch(): void {
    while (this.#waiters.length > 0 && this.#queue.queuedCount > 0) {
      const waiter = this.#waiters.shift()!;
      clearTimeout(waiter.timer);
      if (!waiter.res.destroyed) this.#lease(waiter.caller, waiter.record, waiter.res);
    }
  }

  /** Ends every held poll with 204 (no job in that time) and refuses new ones: server shutdown. */
  close(): void {
    this.#closing = true;
    for (const waiter of this.#waiters.splice(0)) this.#noJob(waiter);
  }

  #poll(url: URL, caller: Caller, res: ServerResponse): void {
    this.counters.polls++;
    const raw = url.searchParams.get('wait');
    const requested = raw === null ? 0 : Number(raw);
    const valid = raw === null || (raw.trim() !== '' && Number.isFinite(requested) && requested >= 0);
    const wait = valid ? Math.min(requested, this.#maxWaitSeconds) : 0;
    const record: PollRecord = { ...caller, at: new Date().toISOString(), requestedWait: raw, wait, status: 0 };
    if (this.#polls.push(record) > MAX_RECORDS) this.#polls.shift();
    if (!valid) {
      this.counters.badRequests++;
      record.status = 400;
      return send(res, 400, { error: '"wait" must be a number of seconds, 0 or more' });
    }
    if (this.#closing) {
      record.status = 503;
      return send(res, 503, { error: 'server closing' });
    }
    if (this.#failures.remaining > 0) {
      this.#failures.remaining--;
      this.counters.injectedFailures++;
      record.status = this.#failures.status;
      return send(res, record.status, { error: 'injected failure' });
    }
    if (this.#queue.queuedCount > 0) return this.#lease(caller, record, res);
    const waiter: Waiter = { caller, res, record, timer: setTimeout(() => this.#timeout(waiter), record.wait * 1000) };
    if (record.wait <= 0) return this.#noJob(waiter);
    this.#waiters.push(waiter);
    // A client that gives up must not be handed a job it will never see.
    res.on('close', () => {
      if (!res.writableEnded) this.#drop(waiter);
    });
  }

  #lease(caller: Caller, record: PollRecord, res: ServerResponse): void {
    const body = this.#queue.lease(caller);
    this.counters.leases++;
    record.status = 200;
    record.jobId = isObject(body) && typeof body.id === 'string' ? body.id : undefined;
    send(res, 200, body);
  }

  #timeout(waiter: Waiter): void {
    this.#drop(waiter);
    this.#noJob(waiter);
  }

  #drop(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    this.#waiters = this.#waiters.filter((w) => w !== waiter);
  }

  #noJob(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    this.counters.noJob++;
    waiter.record.status = 204;
    send(waiter.res, 204);
  }

  async #answer(req: IncomingMessage, res: ServerResponse, caller: Caller, rawId: string, type: AnswerRecord['type']): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) return send(res, 413, { error: 'body too large' }, { connection: 'close' });
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let id: string;
    try {
      id = decodeURIComponent(rawId);
    } catch {
      this.counters.badRequests++;
      return send(res, 400, { error: 'bad job id in path' });
    }
    const [problem, body] = malformed(type, req.headers['content-type'], text);
    const record = this.#queue.answer(id, caller, type, body, problem);
    if (!record) {
      this.counters.notFound++;
      if (this.#strays.push({ id, ...caller, type, status: 404, at: new Date().toISOString(), body }) > MAX_RECORDS) this.#strays.shift();
      return send(res, 404, { error: `unknown job ${id}` });
    }
    if (record.status === 204) this.counters.accepted++;
    else if (record.status === 409) this.counters.conflicts++;
    else this.counters.badRequests++;
    send(res, record.status, record.status === 204 ? undefined : { error: record.reason });
  }
}
