// The opt-in cache of unwrapped keys (--key-cache-size, --key-cache-ttl). Per session, the
// session object a sign unwrapped is kept for the next sign of the same stored row instead of
// being destroyed at once: the unwrap, most of a stateless sign's cost, is skipped. The price:
// a decrypted key lives longer inside the HSM (never outside it), so every entry is destroyed
// on eviction, expiry, any error, session loss and shutdown.
import type * as pkcs11 from 'pkcs11js';
import type { KeyRecord } from '../store/store.js';

export interface KeyCacheOptions {
  /** Unwrapped keys kept per session; 0 turns the cache off. */
  size: number;
  ttlMs: number;
}

interface Entry {
  handle: pkcs11.Handle;
  expiresAt: number;
}

/**
 * What identifies an unwrapped key: the whole row as sealed, and its seal, not only its keyId
 * (rows can change). A hit therefore stands for a row whose seal the HSM checked at the miss.
 */
export function cacheKeyOf(record: KeyRecord): string {
  const b64 = (b: Buffer | null) => b?.toString('base64') ?? '';
  return [record.keyId, record.algorithm, record.masterKeyLabel, record.wrapMechanism, b64(record.wrappedKey), b64(record.publicKeyDer), b64(record.seal)].join('\0');
}

/** One session's cached keys, least recently used first. Only touched while the session is ours. */
export class SessionKeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly opts: KeyCacheOptions,
    private readonly destroy: (handle: pkcs11.Handle) => void,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Removes and returns a live entry for `key` (the caller keeps or destroys it); an expired one is destroyed. */
  take(key: string, now = Date.now()): pkcs11.Handle | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt > now) return entry.handle;
    this.destroy(entry.handle);
    return undefined;
  }

  /** Keeps `handle` as the most recently used entry; destroys what falls off the end. */
  keep(key: string, handle: pkcs11.Handle, now = Date.now()): void {
    this.entries.set(key, { handle, expiresAt: now + this.opts.ttlMs });
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= this.opts.size) break;
      this.entries.delete(oldest);
      this.destroy(entry.handle);
    }
  }

  purgeExpired(now = Date.now()): void {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) continue;
      this.entries.delete(key);
      this.destroy(entry.handle);
    }
  }

  /** Destroys every entry (shutdown, or before the session closes). */
  destroyAll(): void {
    for (const entry of this.entries.values()) this.destroy(entry.handle);
    this.entries.clear();
  }

  /** Forgets every entry without destroying: the objects are gone already (session or library lost). */
  forget(): void {
    this.entries.clear();
  }
}
