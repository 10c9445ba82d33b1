// Signing with a wrapped key on one session: unwrap the stored blob into a sensitive session
// object, sign, destroy it — or, with the key cache on, sign with the object an earlier sign of
// the same row kept (runtime/hsm/key-cache.ts).
import type * as pkcs11 from 'pkcs11js';
import type { Logger } from 'pino';
import type { KeyRecord } from '../store/store.js';
import type { CallTimer } from './call-timer.js';
import { cacheKeyOf, type SessionKeyCache } from './key-cache.js';
import { sign, unwrapIntoSession, type SignRequest } from './keys.js';
import { wrapMechanismId } from './mechanisms.js';

export interface WrappedSignDeps {
  lib: pkcs11.PKCS11;
  /** The session's key cache, or undefined when caching is off. */
  cache: SessionKeyCache | undefined;
  /** The master key that wrapped this row, on this session. */
  masterKey: () => pkcs11.Handle;
  /** Times the PKCS#11 calls for the metrics. */
  calls: CallTimer;
  destroy: (object: pkcs11.Handle) => void;
  stats: { hits: number; misses: number };
  log: Logger;
  /** Checks the row's seal in the HSM (KEY_INTEGRITY if it fails); before every unwrap. */
  checkSeal: () => void;
}

export async function signWrapped(d: WrappedSignDeps, session: pkcs11.Handle, record: KeyRecord & { wrappedKey: Buffer; wrapMechanism: string }, req: SignRequest): Promise<Buffer> {
  const { lib, cache } = d;
  const cacheKey = cache && cacheKeyOf(record);
  const cached = cacheKey ? cache.take(cacheKey) : undefined;
  if (cached) {
    d.stats.hits++;
    try {
      const signature = await d.calls.time('C_Sign', () => sign(lib, session, cached, req));
      cache!.keep(cacheKey!, cached);
      return signature;
    } catch (err) {
      // A kept handle can go stale behind us (a logout, a token reset): never trust it again,
      // and sign the way an uncached driver would.
      d.destroy(cached);
      d.log.warn({ keyId: record.keyId, err: (err as Error).message }, 'cached key failed; unwrapping afresh');
    }
  } else if (cache) d.stats.misses++;
  // A cache hit skips this: its cache key is the whole sealed row and its seal, checked when the entry was made.
  d.checkSeal();
  const key = await d.calls.time('C_UnwrapKey', () => unwrapIntoSession(lib, session, wrapMechanismId(record.wrapMechanism), d.masterKey(), record.wrappedKey, record.algorithm));
  let kept = false;
  try {
    const signature = await d.calls.time('C_Sign', () => sign(lib, session, key, req));
    if (cache) {
      cache.keep(cacheKey!, key);
      kept = true;
    }
    return signature;
  } finally {
    if (!kept) d.destroy(key);
  }
}
