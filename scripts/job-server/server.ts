// Starts the reference job server of PROTOCOL.md: HTTPS that only lets in client certificates
// chaining to the API root (TLS 1.2+), the lease queue, the /v1 API and the optional admin port.
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { adminHandler } from './admin.js';
import { JobApi } from './api.js';
import type { ApiCounters, PollRecord, StrayAnswer } from './api.js';
import { JobQueue } from './queue.js';
import type { JobState, JobView } from './queue.js';

export interface JobServerOptions {
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** PEM contents: the server's certificate and key, and the API root that client chains end in. */
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
  leaseSeconds?: number;
  /** The cap on a poll's `wait`; PROTOCOL.md fixes it at 30. */
  maxWaitSeconds?: number;
  /** Plain-HTTP admin endpoint on 127.0.0.1; off when undefined, 0 picks a free port. */
  adminPort?: number;
  /** Refuse (400) calls whose User-Agent does not start with `hsm-driver/`; default true. */
  requireUserAgent?: boolean;
}

export interface JobServerStats extends ApiCounters {
  jobs: Record<JobState, number>;
  openPolls: number;
  /** TLS handshakes the server refused (e.g. untrusted or incomplete client chains). */
  tlsRefused: number;
}

export interface JobServer {
  readonly port: number;
  /** `https://host:port`; the protocol's base URL is this plus `/v1`. */
  readonly url: string;
  /** `host:port`, as the driver's `--proxy-addr` takes it. */
  readonly proxyAddr: string;
  readonly adminUrl: string | undefined;
  enqueue(kind: string, input: unknown, opts?: { id?: string }): string;
  enqueueRaw(body: unknown): string;
  job(id: string): JobView | undefined;
  jobs(): JobView[];
  waitForCompletion(id: string, timeoutMs?: number): Promise<JobView>;
  failNextPolls(n: number, status?: number): void;
  /** Every poll (newest 10,000): who, which User-Agent, the `wait` asked for and the one used. */
  polls(): PollRecord[];
  /** Answers posted for job ids the server does not know (404). */
  strayAnswers(): StrayAnswer[];
  stats(): JobServerStats;
  close(): Promise<void>;
}

type Completion = { id: string; resolve: (job: JobView) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };

function listen(server: HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting, lets answers in flight finish, and cuts keep-alive sockets after a grace. */
function shut(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), 1000).unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

export async function startJobServer(options: JobServerOptions): Promise<JobServer> {
  const { host = '127.0.0.1', port = 0, leaseSeconds = 30, maxWaitSeconds = 30, requireUserAgent = true } = options;
  if (!(leaseSeconds > 0)) throw new RangeError('leaseSeconds must be more than 0');
  if (!(maxWaitSeconds >= 0)) throw new RangeError('maxWaitSeconds must be 0 or more');
  let completions: Completion[] = [];
  const queue = new JobQueue(leaseSeconds, (job) => {
    if (job.state === 'queued') api.dispatch();
    if (job.state !== 'completed') return;
    for (const c of completions.filter((c) => c.id === job.id)) {
      clearTimeout(c.timer);
      c.resolve(job);
    }
    completions = completions.filter((c) => c.id !== job.id);
  });
  const api = new JobApi(queue, { maxWaitSeconds, requireUserAgent });
  let tlsRefused = 0;
  const https = createHttpsServer(
    { cert: options.cert, key: options.key, ca: options.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req, res) => api.handle(req, res),
  );
  https.on('tlsClientError', () => tlsRefused++);
  const boundPort = await listen(https, port, host);
  const hostPort = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  let admin: HttpServer | undefined;
  let adminUrl: string | undefined;

  const server: JobServer = {
    port: boundPort,
    url: `https://${hostPort}`,
    proxyAddr: hostPort,
    get adminUrl() {
      return adminUrl;
    },
    enqueue: (kind, input, opts) => queue.enqueue(kind, input, opts),
    enqueueRaw: (body) => queue.enqueueRaw(body),
    job: (id) => queue.get(id),
    jobs: () => queue.all(),
    waitForCompletion(id, timeoutMs = 30_000) {
      const job = queue.get(id);
      if (!job) return Promise.reject(new Error(`unknown job ${id}`));
      if (job.state === 'completed') return Promise.resolve(job);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          completions = completions.filter((c) => c.timer !== timer);
          reject(new Error(`job ${id} not completed after ${timeoutMs} ms: ${JSON.stringify(queue.get(id))}`));
        }, timeoutMs);
        completions.push({ id, resolve, reject, timer });
      });
    },
    failNextPolls(n, status = 503) {
      if (!Number.isInteger(n) || n < 0 || !Number.isInteger(status) || status < 100 || status > 599) throw new RangeError('failNextPolls(n >= 0, HTTP status)');
      api.failNextPolls(n, status);
    },
    polls: () => api.polls(),
    strayAnswers: () => api.strayAnswers(),
    stats: () => ({ ...structuredClone(api.counters), jobs: queue.counts(), openPolls: api.openPolls, tlsRefused }),
    async close() {
      api.close();
      queue.stop();
      for (const c of completions.splice(0)) {
        clearTimeout(c.timer);
        c.reject(new Error('job server closed'));
      }
      await Promise.all([shut(https), admin && shut(admin)]);
    },
  };

  // The admin port speaks plain HTTP, so it is never bound beyond the loopback address.
  if (options.adminPort !== undefined) {
    admin = createHttpServer(adminHandler(server));
    try {
      adminUrl = `http://127.0.0.1:${await listen(admin, options.adminPort, '127.0.0.1')}`;
    } catch (err) {
      await shut(https);
      throw err;
    }
  }
  return server;
}
