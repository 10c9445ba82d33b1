// JSON-lines logger on stderr (stdout belongs to the one-shot's single JSON answer). Fixed
// messages, data in fields; PINs and key material are never passed in, and redacted if they are.
import pino, { type Logger } from 'pino';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function createLogger(level = 'info', destination: pino.DestinationStream = pino.destination({ fd: 2, sync: true })): Logger {
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
