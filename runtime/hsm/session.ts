// A pool of logged-in PKCS#11 sessions with one call in flight per session (two at once on
// one session crashed SoftHSM), and the recovery ladder: replace a broken session, log in
// again, or re-initialise the whole library when the device went away.
import * as pkcs11 from 'pkcs11js';
import type { Logger } from 'pino';
import { HsmError } from '../errors.js';
import { SessionKeyCache, type KeyCacheOptions } from './key-cache.js';
import { Pkcs11Library, type TokenSelector, type TokenSummary } from './module.js';
import { PIN_REJECTED, asHsmError, recoveryFor, rvName, rvOf, type Recovery } from './rv.js';

export interface PoolOptions {
  library: Pkcs11Library;
  selector: TokenSelector;
  /** Kept only in memory; never logged, never part of an error text. */
  pin: string;
  size: number;
  log: Logger;
  /** Unwrapped keys kept per session (off when absent or size 0). */
  keyCache?: KeyCacheOptions | undefined;
}

type Token = TokenSummary & { label: string; serial: string };

/** CK_STATE of a read/write session that is not logged in. */
const CKS_RW_PUBLIC_SESSION = 2;
/** Minimum pause between two attempts to bring a lost token back. */
const REOPEN_INTERVAL_MS = 1000;
/** How long a re-initialisation waits for calls still in flight on the old library. */
const DRAIN_BEFORE_REOPEN_MS = 10_000;

export class SessionPool {
  private idle: pkcs11.Handle[] = [];
  private readonly busy = new Set<pkcs11.Handle>();
  private readonly waiters: Array<() => void> = [];
  private token: Token | undefined;
  private reopening: Promise<void> | undefined;
  private lastReopenAt = 0;
  private downReason: string | undefined;
  private closed = false;
  /** Set once the token rejects the PIN: never retried, since retries would lock the token. */
  pinRejected: string | undefined;
  /** Bumped on every re-initialisation; sessions from an older generation are dropped. */
  generation = 0;
  private logins = 0;
  /** Per session (by handle), the unwrapped keys it keeps; objects of a session die with it. */
  private readonly caches = new Map<string, SessionKeyCache>();
  private readonly sweep: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PoolOptions) {
    const cache = opts.keyCache;
    if (cache && cache.size > 0) {
      // Expired keys in idle sessions are destroyed here, at most a second late (a map scan, so
      // cheap); a busy session's wait until it is idle again.
      this.sweep = setInterval(() => {
        for (const s of this.idle) this.caches.get(s.toString('hex'))?.purgeExpired();
      }, Math.min(Math.max(cache.ttlMs / 4, 100), 1_000)).unref();
    }
  }

  /** Sessions running a call now. */
  get inUse(): number {
    return this.busy.size;
  }

  /** The key cache of `session` (ours while we hold it), or undefined when caching is off. */
  keyCache(session: pkcs11.Handle): SessionKeyCache | undefined {
    const opts = this.opts.keyCache;
    if (!opts || opts.size === 0) return undefined;
    const id = session.toString('hex');
    let cache = this.caches.get(id);
    if (!cache) {
      cache = new SessionKeyCache(opts, (handle) => {
        try {
          this.lib.C_DestroyObject(session, handle);
        } catch (err) {
          this.opts.log.error({ err: asHsmError(err, 'C_DestroyObject').message }, 'could not destroy a cached key');
        }
      });
      this.caches.set(id, cache);
    }
    return cache;
  }

  /** Forgets every cached key: the library or the login went away, and the objects with it. */
  private forgetCachedKeys(): void {
    for (const cache of this.caches.values()) cache.forget();
    this.caches.clear();
  }

  /** Changes whenever cached object handles may have gone stale (new library or new login). */
  get handleEpoch(): string {
    return `${this.generation}.${this.logins}`;
  }

  get lib(): pkcs11.PKCS11 {
    return this.opts.library.lib;
  }

  get tokenInfo(): Token {
    if (!this.token) throw new HsmError('HSM_UNAVAILABLE', `token unavailable: ${this.downReason ?? 'not open'}`, -1, 'open');
    return this.token;
  }

  /** Initialises the library, finds the token, opens one session and logs in. */
  async open(): Promise<void> {
    this.opts.library.initialize();
    this.token = this.opts.library.findToken(this.opts.selector);
    this.idle.push(this.openSession());
  }

  /** Records that the token could not be opened; acquire retries it at most once a second. */
  markDown(reason: string): void {
    this.token = undefined;
    this.downReason = reason;
    this.lastReopenAt = Date.now();
    this.opts.library.finalize();
  }

  /** Runs fn on a session of its own; after a recoverable failure, recovers and tries once more. */
  async use<T>(fn: (session: pkcs11.Handle) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const session = await this.acquire();
      const generation = this.generation;
      let recovery: Recovery = 'none';
      try {
        return await fn(session);
      } catch (err) {
        recovery = recoveryFor(err);
        if (recovery === 'none' || attempt > 0) throw err;
        this.opts.log.warn({ rv: rvOf(err), recovery }, 'hsm call failed, recovering');
      } finally {
        this.release(session, generation, recovery);
      }
      await this.recover(recovery);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweep);
    await this.drained(DRAIN_BEFORE_REOPEN_MS);
    for (const s of this.idle) {
      this.caches.get(s.toString('hex'))?.destroyAll();
      this.closeSession(s);
    }
    this.idle = [];
    this.token = undefined;
    this.opts.library.finalize();
  }

  private async acquire(): Promise<pkcs11.Handle> {
    for (;;) {
      if (this.closed) throw new HsmError('HSM_UNAVAILABLE', 'hsm is shutting down', -1, 'acquire');
      if (this.reopening) await this.reopening.catch(() => undefined);
      if (!this.token) await this.reopenThrottled();
      const session = this.idle.pop();
      if (session) {
        this.busy.add(session);
        return session;
      }
      if (this.busy.size < this.opts.size) {
        const fresh = this.openSession();
        this.busy.add(fresh);
        return fresh;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private release(session: pkcs11.Handle, generation: number, recovery: Recovery): void {
    this.busy.delete(session);
    if (generation !== this.generation || recovery === 'library') {
      // Belongs to a library instance that is being (or was) re-initialised: just forget it.
    } else if (recovery === 'session' || this.closed) {
      this.closeSession(session);
    } else {
      this.idle.push(session);
    }
    this.waiters.shift()?.();
  }

  private async recover(recovery: Recovery): Promise<void> {
    if (recovery === 'login') {
      this.forgetCachedKeys();
      await this.use(async (s) => this.login(s));
    } else if (recovery === 'library') {
      await this.reopen();
    }
    if (recovery === 'session') this.dropDeadIdleSessions();
  }

  /** One broken session often means all are (the token closed them): check the idle ones. */
  private dropDeadIdleSessions(): void {
    this.idle = this.idle.filter((s) => {
      try {
        this.lib.C_GetSessionInfo(s);
        return true;
      } catch {
        this.closeSession(s);
        return false;
      }
    });
  }

  /** True when this application is logged in (sessions report a USER state). */
  isLoggedIn(session: pkcs11.Handle): boolean {
    return this.lib.C_GetSessionInfo(session).state !== CKS_RW_PUBLIC_SESSION;
  }

  private async reopenThrottled(): Promise<void> {
    if (Date.now() - this.lastReopenAt < REOPEN_INTERVAL_MS) {
      throw new HsmError('HSM_UNAVAILABLE', `token unavailable: ${this.downReason ?? 'not open'}`, -1, 'open');
    }
    await this.reopen();
  }

  /** Re-initialises the library now (throws HSM_UNAVAILABLE if the token is still gone). */
  reinitialize(): Promise<void> {
    return this.reopen();
  }

  /** Re-initialises the library once, however many callers ask at the same time. */
  private reopen(): Promise<void> {
    this.reopening ??= (async () => {
      this.lastReopenAt = Date.now();
      this.generation++;
      this.token = undefined;
      this.idle = [];
      this.forgetCachedKeys();
      await this.drained(DRAIN_BEFORE_REOPEN_MS);
      this.opts.library.finalize();
      try {
        await this.open();
        this.downReason = undefined;
        this.opts.log.info({ token: this.opts.selector.label }, 'hsm re-initialised');
      } catch (err) {
        this.token = undefined;
        this.downReason = asHsmError(err, 'open').message;
        this.opts.log.error({ reason: this.downReason }, 'hsm unavailable');
        throw new HsmError('HSM_UNAVAILABLE', `token unavailable: ${this.downReason}`, rvOf(err) ?? -1, 'open');
      }
    })().finally(() => {
      this.reopening = undefined;
    });
    return this.reopening;
  }

  private async drained(limitMs: number): Promise<void> {
    const deadline = Date.now() + limitMs;
    while (this.busy.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /** Opens a session, logging in if the application is not (the token may have dropped it). */
  private openSession(): pkcs11.Handle {
    const slot = this.tokenInfo.slot;
    let session: pkcs11.Handle;
    try {
      session = this.lib.C_OpenSession(slot, pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION);
    } catch (err) {
      throw asHsmError(err, 'C_OpenSession', 'HSM_UNAVAILABLE');
    }
    try {
      if (!this.isLoggedIn(session)) this.login(session);
    } catch (err) {
      this.closeSession(session);
      throw asHsmError(err, 'C_GetSessionInfo', 'HSM_UNAVAILABLE');
    }
    return session;
  }

  private closeSession(session: pkcs11.Handle): void {
    this.caches.get(session.toString('hex'))?.forget(); // closing destroys its objects
    this.caches.delete(session.toString('hex'));
    try {
      this.lib.C_CloseSession(session);
    } catch {
      /* closing a broken session may fail; its objects go with it either way */
    }
  }

  /** Login state is per application, so one C_Login serves every session. */
  private login(session: pkcs11.Handle): void {
    if (this.pinRejected) {
      throw new HsmError('HSM_UNAVAILABLE', `the token rejected the PIN (${this.pinRejected}); not retrying, to avoid locking it: fix the PIN and restart`, -1, 'C_Login');
    }
    this.logins++;
    try {
      this.lib.C_Login(session, pkcs11.CKU_USER, this.opts.pin);
    } catch (err) {
      const rv = rvOf(err);
      if (rv === pkcs11.CKR_USER_ALREADY_LOGGED_IN) return;
      if (rv !== undefined && PIN_REJECTED.has(rv)) this.pinRejected = rvName(rv);
      throw asHsmError(err, 'C_Login', 'HSM_UNAVAILABLE');
    }
  }
}
