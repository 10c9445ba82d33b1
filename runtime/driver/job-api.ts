// Every HTTPS call to the job API (PROTOCOL.md), over mutual TLS with keep-alive: the only
// place in the driver that speaks HTTP.
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { Backoff, sleep } from './backoff.js';
import type { WireError } from '../errors.js';
import type { ClientTls } from './tls.js';

/** A leased job as the API sent it; `kind` and `input` are checked later, by the dispatcher. */
export interface LeasedJob {
  id: string;
  kind: unknown;
  attempt: number;
  leaseExpiresAt: Date;
  input: unknown;
}

export type Answer = { output: unknown } | { error: WireError };
export type Delivery = 'accepted' | 'lease-lost' | 'unknown-job' | 'lease-expired';

/** A poll that did not return a job or "no job": the loop backs off and polls again. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    /** For a failure with no HTTP status: the network error code, or what was wrong with the body. */
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const MAX_WAIT_SECONDS = 30;
/** Answer retries stop this long before the lease ends: an answer after it would be refused. */
const LEASE_MARGIN_MS = 250;
/**
 * A longer lease is taken as this long: no job needs more, a slot retrying an answer must come
 * free, and timers cannot take much more (AbortSignal.timeout throws past 2^32 ms).
 */
const MAX_LEASE_MS = 10 * 60_000;
/** The largest job is about 130 KiB (65536 bytes of data as hex): a body far larger is refused unread. */
const MAX_JOB_BYTES = 1 << 20;
/** What is kept of an error response's text for the log. */
const MAX_ERROR_BYTES = 4096;
const JOB_ID = /^[A-Za-z0-9._:~-]{1,256}$/;

/**
 * undici's TLS connector, except that on Windows TCP keep-alive is switched on once connected:
 * undici sets it before connecting, and Wine's sockets then fail the connect itself (UNKNOWN).
 */
function connector(options: buildConnector.BuildOptions): buildConnector.connector {
  if (process.platform !== 'win32') return buildConnector(options);
  const connect = buildConnector({ ...options, keepAlive: false });
  return (opts, callback) =>
    connect(opts, (...result) => {
      if (result[0] === null) result[1].setKeepAlive(true, 60_000);
      callback(...result);
    });
}

export class JobApi {
  private readonly agent: Agent;
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(
    proxyAddr: string,
    tls: ClientTls,
    version: string,
    private readonly log: Logger,
  ) {
    this.base = `https://${proxyAddr}/v1`;
    this.headers = { 'user-agent': `hsm-driver/${version}`, 'content-type': 'application/json', accept: 'application/json' };
    this.agent = new Agent({
      connect: connector({ cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: 'TLSv1.2', rejectUnauthorized: true }),
      keepAliveTimeout: 60_000,
      // The server holds a poll up to `wait` seconds; give it room before calling it a timeout.
      headersTimeout: (MAX_WAIT_SECONDS + 15) * 1000,
      bodyTimeout: 30_000,
      connectTimeout: 10_000,
    });
  }

  /** Long poll. Returns null on 204; throws ApiError on anything to back off from. */
  async next(waitSeconds: number, signal: AbortSignal): Promise<LeasedJob | null> {
    const wait = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor(waitSeconds)));
    const res = await this.call('GET', `/jobs/next?wait=${wait}`, undefined, signal);
    if (res.statusCode === 204) return drain(res, null);
    if (res.statusCode === 200) {
      const tooLarge = () => new ApiError(`poll returned a job body over ${MAX_JOB_BYTES} bytes`, undefined, 'too-large');
      if (Number(res.headers['content-length']) > MAX_JOB_BYTES) {
        res.body.destroy();
        throw tooLarge();
      }
      const body = await readCapped(res, MAX_JOB_BYTES, signal);
      if (!body.complete) throw tooLarge();
      return parseJob(parseJson(body.text));
    }
    const { text } = await readCapped(res, MAX_ERROR_BYTES, signal).catch(() => ({ text: '' }));
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new ApiError(`the job API refused our client certificate (${res.statusCode})`, res.statusCode);
    }
    throw new ApiError(`poll answered ${res.statusCode}${text ? `: ${text.slice(0, 200)}` : ''}`, res.statusCode);
  }

  /** Posts a result or error; retries other failures with backoff until the lease ends. */
  async answer(job: LeasedJob, answer: Answer): Promise<Delivery> {
    const path = `/jobs/${encodeURIComponent(job.id)}/${'output' in answer ? 'result' : 'error'}`;
    const backoff = new Backoff(100, 2000);
    for (;;) {
      // No call starts after the margin, and none outlives the lease: an answer is never late.
      const remaining = job.leaseExpiresAt.getTime() - Date.now();
      if (remaining <= LEASE_MARGIN_MS) return 'lease-expired';
      try {
        const res = await this.call('POST', path, JSON.stringify(answer), AbortSignal.timeout(remaining));
        await drain(res, null);
        if (res.statusCode === 204 || res.statusCode === 200) return 'accepted';
        if (res.statusCode === 409) return 'lease-lost';
        if (res.statusCode === 404) return 'unknown-job';
        this.log.warn({ jobId: job.id, status: res.statusCode }, 'answer not accepted, retrying');
      } catch (err) {
        this.log.warn({ jobId: job.id, err: (err as Error).message }, 'answer failed, retrying');
      }
      const delay = backoff.next();
      if (Date.now() + delay > job.leaseExpiresAt.getTime() - LEASE_MARGIN_MS) return 'lease-expired';
      await sleep(delay);
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }

  private async call(method: 'GET' | 'POST', path: string, body: string | undefined, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    try {
      return await request(`${this.base}${path}`, { method, headers: this.headers, body, signal, dispatcher: this.agent });
    } catch (err) {
      if (signal.aborted) throw err;
      const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
      throw new ApiError(`${method} ${path.split('?')[0]} failed: ${e.cause?.code ?? e.code ?? e.message}`, undefined, e.cause?.code ?? e.code ?? 'network');
    }
  }
}

async function drain<T>(res: Dispatcher.ResponseData, value: T): Promise<T> {
  await res.body.dump().catch(() => undefined);
  return value;
}

/**
 * Up to `limit` bytes of the body as text, and whether that was all of it; a longer body is not
 * read further (its connection is dropped). A failure mid-body is an ApiError with its code.
 */
async function readCapped(res: Dispatcher.ResponseData, limit: number, signal: AbortSignal): Promise<{ text: string; complete: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) return { text: Buffer.concat(chunks).subarray(0, limit).toString('utf8'), complete: false };
    }
  } catch (err) {
    if (signal.aborted) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new ApiError(`reading the response body failed: ${e.code ?? e.message}`, undefined, e.code ?? 'network');
  }
  return { text: Buffer.concat(chunks).toString('utf8'), complete: true };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Checks the envelope; a job without a usable id cannot be answered, so it is an ApiError. */
export function parseJob(body: unknown): LeasedJob {
  if (typeof body !== 'object' || body === null) throw new ApiError('poll returned a job that is not a JSON object', undefined, 'bad-job');
  const b = body as Record<string, unknown>;
  if (typeof b.id !== 'string' || !JOB_ID.test(b.id)) throw new ApiError('poll returned a job without a usable id', undefined, 'bad-job');
  const lease = typeof b.leaseExpiresAt === 'string' ? new Date(b.leaseExpiresAt) : new Date(NaN);
  const latest = Date.now() + MAX_LEASE_MS;
  return {
    id: b.id,
    // An object or array names no kind: it goes on as its type, so that nothing downstream has
    // to stringify it (String() of a deeply nested array overflows the stack).
    kind: typeof b.kind === 'object' && b.kind !== null ? (Array.isArray(b.kind) ? '[array]' : '[object]') : b.kind,
    attempt: typeof b.attempt === 'number' ? b.attempt : 1,
    // Without a readable lease, assume the protocol's usual 30 s so answers still get retried.
    leaseExpiresAt: Number.isNaN(lease.getTime()) ? new Date(Date.now() + 30_000) : lease.getTime() > latest ? new Date(latest) : lease,
    input: b.input,
  };
}
