// Reference job API server of PROTOCOL.md, for tests and demos: `node scripts/job-server.ts --help`,
// or `import { startJobServer } from '../scripts/job-server.js'`. The code lives in job-server/.
import { registerHooks } from 'node:module';

// Node runs these TypeScript files as they are, but unlike tsc and vitest it does not map the
// `.js` specifiers our tsconfig requires onto the `.ts` files beside them. This hook does, for
// job-server/ only; the imports below are dynamic so that they run after it is in place.
const dir = new URL('./job-server/', import.meta.url).href;
registerHooks({
  resolve(specifier, context, next) {
    const url = specifier.startsWith('.') && context.parentURL ? new URL(specifier, context.parentURL).href : '';
    return next(url.startsWith(dir) && url.endsWith('.js') ? `${url.slice(0, -3)}.ts` : specifier, context);
  },
});

const server = await import('./job-server/server.js');
const admin = await import('./job-server/admin.js');

export const startJobServer = server.startJobServer;
/** Enqueues one `{kind, input, id?}` or `{raw}` spec, as the admin endpoint and --jobs-file do. */
export const enqueueSpec = admin.enqueueSpec;
export type { JobServer, JobServerOptions, JobServerStats } from './job-server/server.js';
export type { AnswerRecord, JobState, JobView, LeaseRecord } from './job-server/queue.js';
export type { PollRecord, StrayAnswer } from './job-server/api.js';
export type { JobSpec } from './job-server/admin.js';

if (import.meta.main) {
  const code = await (await import('./job-server/cli.js')).main(process.argv.slice(2));
  if (code !== undefined) process.exitCode = code;
}
