// JSON-lines logger on stderr (stdout belongs to the one-shot's single JSON answer), or a
// human-readable form when stderr is a terminal. Fixed messages, data in fields; PINs and key
// material are never passed in, and redacted if they are.
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function defaultDestination(): pino.DestinationStream {
  if (process.stderr.isTTY) return pretty({ destination: 2, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
  return pino.destination({ fd: 2, sync: true });
}

export function createLogger(level = 'info', destination: pino.DestinationStream = defaultDestination()): Logger {
  if (!LEVELS.includes(level)) level = 'info';
  return pino(
    {
      level,
      base: { name: 'hsm-driver' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['pin', '*.pin', 'USER_PIN', '*.USER_PIN', 'privateKey', '*.privateKey'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
