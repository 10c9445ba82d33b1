// Entry point: runs the command line and exits with its code. The only place that exits.
import { readFileSync } from 'node:fs';
import { runCli } from './cli.js';

void runCli(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  readStdin: () => readFileSync(0, 'utf8'),
  env: process.env,
}).then((code) => {
  process.exitCode = code;
});
