// Maps a job kind to its handler: the whole list of what the driver can do.
import type { JobContext } from '../runtime/context.js';
import { UnsupportedKindError } from '../runtime/errors.js';
import { health } from './health.js';
import { keygen } from './keygen.js';
import { sign } from './sign.js';

export type Handler = (input: unknown, ctx: JobContext) => Promise<unknown>;

export const HANDLERS: Readonly<Record<string, Handler>> = { keygen, sign, health };

export function handlerFor(kind: unknown): Handler {
  const handler = typeof kind === 'string' && Object.hasOwn(HANDLERS, kind) ? HANDLERS[kind] : undefined;
  if (!handler) throw new UnsupportedKindError(typeof kind === 'string' ? kind : typeof kind);
  return handler;
}
