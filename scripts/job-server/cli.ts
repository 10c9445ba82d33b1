// Command line of the reference job server: reads the certificate files, starts the server,
// prints one `listening on …` line, and on SIGTERM/SIGINT writes the dump file and stops.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { enqueueSpec } from './admin.js';
import { startJobServer } from './server.js';
import type { JobServer } from './server.js';

export const USAGE = `usage: node scripts/job-server.ts --cert FILE --key FILE --ca FILE [options]

A reference implementation of PROTOCOL.md (job API v1) over mutual TLS, for tests and demos.
Clients must present a certificate chaining to --ca (send the intermediate with the leaf).

  --cert FILE           server certificate (PEM), e.g. server.pem from scripts/pki.sh
  --key FILE            server private key (PEM)
  --ca FILE             API root CA that client chains must end in, e.g. api-ca.pem
  --host HOST           address to listen on (default 127.0.0.1)
  --port P              port (default 0: any free port; the ready line names it)
  --lease-seconds N     lease length (default 30)
  --admin-port P        plain-HTTP admin endpoint on 127.0.0.1 (default off; 0: any free port):
                        POST /admin/jobs (one {kind, input[, id]} or {raw: …}, or an array),
                        GET /admin/jobs, /admin/jobs/ID, /admin/stats, /admin/polls,
                        /admin/stray-answers, POST /admin/fail-next-polls {count[, status]}
  --jobs-file F         JSON array of {kind, input[, id]} (or {raw: …}) enqueued at start
  --dump-file F         on SIGTERM/SIGINT, write {jobs, strayAnswers, stats, polls} here
                        (jobs with every lease and answer)
  --help                this text

Prints "listening on https://HOST:PORT" on stdout when ready (and "admin on …" on stderr).`;

class UsageError extends Error {}

function number(name: string, value: string | undefined, check: (n: number) => boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !check(n)) throw new UsageError(`bad --${name}: ${value}`);
  return n;
}

const isPort = (n: number) => Number.isInteger(n) && n >= 0 && n <= 65535;

/** Writes the whole file or nothing: a reader never sees half a dump. */
function writeDump(path: string, server: JobServer): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify({ jobs: server.jobs(), strayAnswers: server.strayAnswers(), stats: server.stats(), polls: server.polls() }, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

/** Runs the server; resolves to an exit code when it will not run (help 0, bad usage 2, else 1). */
export async function main(argv: string[]): Promise<number | undefined> {
  let server: JobServer;
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        cert: { type: 'string' }, key: { type: 'string' }, ca: { type: 'string' }, host: { type: 'string' },
        port: { type: 'string' }, 'lease-seconds': { type: 'string' }, 'admin-port': { type: 'string' },
        'jobs-file': { type: 'string' }, 'dump-file': { type: 'string' }, help: { type: 'boolean' },
      },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const missing = (['cert', 'key', 'ca'] as const).filter((name) => values[name] === undefined);
    if (missing.length > 0) throw new UsageError(`missing ${missing.map((name) => `--${name}`).join(', ')}`);
    const jobs: unknown = values['jobs-file'] === undefined ? [] : JSON.parse(readFileSync(values['jobs-file'], 'utf8'));
    if (!Array.isArray(jobs)) throw new UsageError('--jobs-file must hold a JSON array');
    server = await startJobServer({
      host: values.host,
      port: number('port', values.port, isPort),
      cert: readFileSync(values.cert!),
      key: readFileSync(values.key!),
      ca: readFileSync(values.ca!),
      leaseSeconds: number('lease-seconds', values['lease-seconds'], (n) => n > 0),
      adminPort: number('admin-port', values['admin-port'], isPort),
    });
    try {
      for (const spec of jobs) enqueueSpec(server, spec);
    } catch (err) {
      await server.close();
      throw new UsageError(`--jobs-file: ${(err as Error).message}`);
    }
    const dumpFile = values['dump-file'];
    const stop = (signal: NodeJS.Signals) => {
      // Dump first: closing ends held polls, and the dump should show the state they saw.
      if (dumpFile !== undefined) writeDump(dumpFile, server);
      console.error(`job-server: ${signal}, stopping`);
      void server.close();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  } catch (err) {
    const usage = err instanceof UsageError || String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
    console.error(`job-server: ${(err as Error).message}${usage ? ' (see --help)' : ''}`);
    return usage ? 2 : 1;
  }
  console.log(`listening on ${server.url}`);
  if (server.adminUrl) console.error(`admin on ${server.adminUrl}`);
  return undefined;
}
