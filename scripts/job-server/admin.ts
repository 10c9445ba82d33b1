// The job server's admin endpoint: plain HTTP, bound to 127.0.0.1 by the server, for demos
// and scripts to enqueue jobs and read them back with every answer. Not part of the protocol.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JobServer } from './server.js';

/**
 * One job to enqueue, as the admin endpoint and `--jobs-file` take it: `{kind, input, id?}`,
 * or `{raw: <any JSON>}` for a malformed job sent as it is (see JobServer.enqueueRaw).
 */
export type JobSpec = { kind: string; input?: unknown; id?: string } | { raw: unknown };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Enqueues one spec; throws a TypeError naming what is wrong with it. */
export function enqueueSpec(server: Pick<JobServer, 'enqueue' | 'enqueueRaw'>, spec: unknown): string {
  if (!isObject(spec)) throw new TypeError('a job must be an object');
  if ('raw' in spec) return server.enqueueRaw(spec.raw);
  if (typeof spec.kind !== 'string') throw new TypeError('"kind" must be a string (use {"raw": …} for malformed jobs)');
  if (spec.id !== undefined && typeof spec.id !== 'string') throw new TypeError('"id" must be a string');
  return server.enqueue(spec.kind, spec.input, spec.id === undefined ? {} : { id: spec.id });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * `POST /admin/jobs` (one spec or an array; 201 `{ids}`), `GET /admin/jobs`, `GET /admin/jobs/{id}`,
 * `GET /admin/stats`, `/admin/polls`, `/admin/stray-answers` and `POST /admin/fail-next-polls` `{count, status?}`.
 */
export function adminHandler(server: JobServer): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    route(server, req, res).catch((err: unknown) => send(res, 500, { error: String(err) }));
  };
}

async function route(server: JobServer, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://admin').pathname;
  const one = /^\/admin\/jobs\/([^/]+)$/.exec(path);
  if (req.method === 'GET' && path === '/admin/jobs') return send(res, 200, server.jobs());
  if (req.method === 'GET' && path === '/admin/stats') return send(res, 200, server.stats());
  if (req.method === 'GET' && path === '/admin/polls') return send(res, 200, server.polls());
  if (req.method === 'GET' && path === '/admin/stray-answers') return send(res, 200, server.strayAnswers());
  if (req.method === 'GET' && one) {
    const job = server.job(decodeURIComponent(one[1]!));
    return job ? send(res, 200, job) : send(res, 404, { error: 'unknown job' });
  }
  if (req.method !== 'POST' || (path !== '/admin/jobs' && path !== '/admin/fail-next-polls')) return send(res, 404, { error: 'no such endpoint' });
  let body: unknown;
  try {
    body = await readJson(req);
  } catch {
    return send(res, 400, { error: 'body is not JSON' });
  }
  if (path === '/admin/fail-next-polls') {
    const { count, status = 503 } = isObject(body) ? body : {};
    try {
      server.failNextPolls(count as number, status as number);
    } catch {
      return send(res, 400, { error: 'want {"count": n, "status"?: code}' });
    }
    return send(res, 200, { count, status });
  }
  const specs = Array.isArray(body) ? body : [body];
  // Check every spec before enqueueing any, so that a bad array enqueues nothing.
  const seen = new Set<string>();
  for (const [index, spec] of specs.entries()) {
    try {
      enqueueSpec({ enqueue: () => '', enqueueRaw: () => '' }, spec);
    } catch (err) {
      return send(res, 400, { error: `job ${index}: ${(err as Error).message}` });
    }
    const id = isObject(spec) ? ('raw' in spec ? (isObject(spec.raw) ? spec.raw.id : undefined) : spec.id) : undefined;
    if (typeof id !== 'string') continue;
    if (seen.has(id) || server.job(id)) return send(res, 409, { error: `job ${index}: id ${id} already exists` });
    seen.add(id);
  }
  send(res, 201, { ids: specs.map((spec) => enqueueSpec(server, spec)) });
}
