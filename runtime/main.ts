// Entry point: runs the command line and exits with its code. The only place that exits, and
// the only place that handles signals.
import { readFileSync } from 'node:fs';
import { runCli } from './cli/cli.js';

/** First SIGTERM/SIGINT: stop taking jobs and drain. Second: leave now, non-zero. */
function stopSignal(): AbortSignal {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stop.signal.aborted) {
      process.stderr.write(`hsm-driver: ${signal}: draining (send again to force exit)\n`);
      stop.abort();
      return;
    }
    process.stderr.write(`hsm-driver: ${signal} again: exiting without draining\n`);
    process.exit(130);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return stop.signal;
}

// `hsm-driver version | head -1`: a reader that left early is not an error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

void runCli(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  readStdin: () => readFileSync(0, 'utf8'),
  env: process.env,
  stopSignal,
  terminal: process.stderr.isTTY ? process.stderr : undefined,
}).then((code) => {
  process.exitCode = code;
  // A drain that timed out leaves HSM calls running; do not wait for them.
  if (code !== 0) setTimeout(() => process.exit(code), 100).unref();
});
