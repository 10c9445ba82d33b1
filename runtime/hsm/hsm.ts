// The HSM as handlers see it: generate a key (wrapped or resident), sign with a stored key,
// report health. Owns the session pool and the master-key handles; the only door to PKCS#11.
import { randomBytes } from 'node:crypto';
import * as pkcs11 from 'pkcs11js';
import type { Logger } from 'pino';
import { ALGORITHMS, ALGORITHM_SPECS, type Algorithm } from '../crypto/algorithms.js';
import { ConfigError, DriverError, HsmError, KeyIntegrityError, UnsupportedAlgorithmError } from '../errors.js';
import type { KeyRecord } from '../store/store.js';
import { destroyObject, findObjects, generateKeyPair, readPublicKey, sign, unwrapIntoSession, wrapKey, type SignRequest } from './keys.js';
import { signWrapped } from './wrapped-sign.js';
import { CallTimer } from './call-timer.js';
import { IntegrityKey } from './integrity-key.js';
import { RowSeals, rowSealInput, type SealedFields } from './row-seal.js';
import { checkMasterKey, MasterKeys } from './master-key.js';
import { WRAP_MECHANISMS, wrapMechanismId } from './mechanisms.js';
import { Pkcs11Library } from './module.js';
import { probeAlgorithm, type AlgorithmMode } from './probe.js';
import { asHsmError, rvOf, UNSUPPORTED_RV } from './rv.js';
import type { GeneratedKey, HsmConfig, HsmHealth } from './types.js';
import { SessionPool } from './session.js';
import type { HsmPort } from '../context.js';
import { residentKeyQuery, rewrapTemplate } from './templates.js';

export type { SignRequest } from './keys.js';
export type { AlgorithmMode } from './probe.js';
export type { GeneratedKey, HsmConfig, HsmHealth } from './types.js';

/** A row's resident key is not on the token (KEY_INTEGRITY once a refresh did not find it either). */
class ResidentKeyMissing extends KeyIntegrityError {}

const RESIDENT_REFRESH_INTERVAL_MS = 60_000;

/** The configured wrap mechanism is not offered by the token: fatal, retrying cannot help. */
export class WrapMechanismError extends ConfigError {}

export class Hsm implements HsmPort {
  readonly library: Pkcs11Library;
  get masterKeyLabel(): string {
    return this.config.masterKeyLabel;
  }
  readonly pool: SessionPool;
  private readonly modes = new Map<string, Promise<AlgorithmMode>>();
  private readonly masterKeys: MasterKeys;
  readonly integrityKey: IntegrityKey;
  readonly rowSeals: RowSeals;
  /**
   * Token-object writes (resident keygen, discard) run one at a time: SoftHSM's file store
   * returned CKR_GENERAL_ERROR for about 1 in 20 keygens made while another object was destroyed.
   */
  private tokenWrites: Promise<unknown> = Promise.resolve();
  private lastResidentRefresh = 0;

  private constructor(readonly config: HsmConfig, private readonly log: Logger) {
    this.library = new Pkcs11Library(config.module);
    this.pool = new SessionPool({ library: this.library, selector: config.selector, pin: config.pin, size: config.sessions, log, keyCache: config.keyCache });
    this.masterKeys = new MasterKeys(this.pool, config.masterKeyLabel);
    this.integrityKey = new IntegrityKey(this.pool, config.integrityKeyLabel ?? 'integrity');
    this.rowSeals = new RowSeals(this.integrityKey, config.requireSealedRows ?? false, log);
  }

  /** Loads the module, logs in, and checks the master key's posture (warnings are logged loudly). */
  static async open(config: HsmConfig, log: Logger): Promise<Hsm> {
    const hsm = new Hsm(config, log);
    try {
      await hsm.pool.open();
      await hsm.checkToken();
      return hsm;
    } catch (err) {
      await hsm.close();
      throw err;
    }
  }

  /**
   * For the long-running driver: a token that is down (or not visible yet) at start is not
   * fatal; the pool keeps trying and the readiness gate waits. A PIN the token rejected is
   * fatal: retrying it would lock the token.
   */
  static async start(config: HsmConfig, log: Logger): Promise<Hsm> {
    const hsm = new Hsm(config, log);
    try {
      await hsm.pool.open();
      hsm.checkWrapMechanism();
    } catch (err) {
      if (hsm.pool.pinRejected || err instanceof WrapMechanismError || !(err instanceof DriverError || err instanceof ConfigError)) {
        await hsm.close();
        throw err;
      }
      hsm.pool.markDown(err.message);
      log.error({ reason: err.message }, 'hsm unavailable at start; will keep trying');
      return hsm;
    }
    // A master key missing at start may be a ceremony in progress: the readiness gate waits.
    await hsm.warnAboutMasterKey().catch((err: unknown) => log.error({ reason: (err as Error).message }, 'master key unusable at start'));
    // Without the integrity key the driver still signs; nothing it would seal can be sealed.
    await hsm.checkIntegrityKey().catch((err: unknown) => log.warn({ reason: (err as Error).message }, 'INTEGRITY KEY MISSING: nothing can be sealed'));
    return hsm;
  }

  private async checkToken(): Promise<void> {
    this.checkWrapMechanism();
    await this.warnAboutMasterKey();
  }

  /** A wrap mechanism the token does not offer is a configuration error, named at start. */
  private checkWrapMechanism(): void {
    const offered = new Set(this.library.lib.C_GetMechanismList(this.pool.tokenInfo.slot));
    const wanted = this.config.wrapMechanism;
    if (offered.has(wrapMechanismId(wanted))) return;
    const usable = Object.entries(WRAP_MECHANISMS).filter(([, id]) => offered.has(id)).map(([name]) => name);
    throw new WrapMechanismError(`token ${this.pool.tokenInfo.label} does not offer wrap mechanism ${wanted}; it offers: ${usable.join(', ') || 'none of ours'} (--wrap-mechanism)`);
  }

  /** What the start-up check found wrong with the master key's attributes; empty when sound. */
  masterKeyWarnings: string[] = [];

  private async warnAboutMasterKey(): Promise<void> {
    const label = this.config.masterKeyLabel;
    const warnings = await this.pool.use(async (s) => checkMasterKey(this.library.lib, s, this.masterKeys.handle(s, label)));
    this.masterKeyWarnings = warnings;
    for (const warning of warnings) this.log.warn({ masterKey: label, warning }, 'MASTER KEY POSTURE IS WEAK');
  }

  get libraryDescription(): string {
    const i = this.library.info();
    return `${i.manufacturer} ${i.description} ${i.version}`.trim();
  }

  /** How this token keeps keys of an algorithm; probed on first use, then cached. */
  modeOf(algorithm: Algorithm): Promise<AlgorithmMode> {
    // RSA sizes share one probe: wrapping does not depend on the modulus, and 4096-bit keygen is slow.
    const family = ALGORITHM_SPECS[algorithm].family === 'rsa' ? 'rsa-2048' : algorithm;
    const resident = this.config.residentAlgorithms.includes(algorithm);
    const cacheKey = `${family}:${resident}`;
    let mode = this.modes.get(cacheKey);
    if (!mode) {
      mode = this.pool.use((s) =>
        probeAlgorithm(this.library.lib, s, family, resident, wrapMechanismId(this.config.wrapMechanism), this.masterKeys.handle(s, this.config.masterKeyLabel)),
      );
      mode.catch(() => this.modes.delete(cacheKey));
      this.modes.set(cacheKey, mode);
    }
    return mode;
  }

  async allModes(): Promise<Record<Algorithm, AlgorithmMode>> {
    const out = {} as Record<Algorithm, AlgorithmMode>;
    for (const a of ALGORITHMS) out[a] = await this.modeOf(a);
    return out;
  }

  async generate(algorithm: Algorithm, keyId: string): Promise<GeneratedKey> {
    const mode = await this.modeOf(algorithm);
    if (mode.mode === 'unsupported') throw new UnsupportedAlgorithmError(`${algorithm}: ${mode.reason}`);
    try {
      return mode.mode === 'resident' ? await this.generateResident(algorithm, keyId) : await this.generateWrapped(algorithm, keyId);
    } catch (err) {
      const rv = err instanceof HsmError ? err.rv : rvOf(err);
      if (rv !== undefined && UNSUPPORTED_RV.has(rv) && (err as HsmError).method === 'C_GenerateKeyPair') {
        throw new UnsupportedAlgorithmError(`${algorithm}: the token refused to generate it (${(err as Error).message})`);
      }
      throw err;
    }
  }

  private generateWrapped(algorithm: Algorithm, keyId: string): Promise<GeneratedKey> {
    const lib = this.library.lib;
    const { masterKeyLabel, wrapMechanism } = this.config;
    return this.pool.use(async (s) => {
      const pair = await this.calls.time('C_GenerateKeyPair', () => generateKeyPair(lib, s, algorithm, { mode: 'wrapped' }));
      try {
        const publicKeyDer = readPublicKey(lib, s, pair.publicKey, algorithm);
        const wrappedKey = await this.calls.time('C_WrapKey', () => wrapKey(lib, s, wrapMechanismId(wrapMechanism), this.masterKeys.handle(s, masterKeyLabel), pair.privateKey));
        const key = { publicKeyDer, wrappedKey, residentId: null, wrapMechanism, masterKeyLabel };
        return { ...key, seal: this.rowSeals.seal(s, { keyId, algorithm, ...key }) };
      } finally {
        this.destroy(s, pair.privateKey);
        this.destroy(s, pair.publicKey);
      }
    });
  }

  private generateResident(algorithm: Algorithm, keyId: string): Promise<GeneratedKey> {
    const lib = this.library.lib;
    const id = randomBytes(16);
    return this.oneTokenWriteAtATime(() => this.pool.use(async (s) => {
      const pair = await this.calls.time('C_GenerateKeyPair', () => generateKeyPair(lib, s, algorithm, { mode: 'resident', id, label: keyId }));
      try {
        const publicKeyDer = readPublicKey(lib, s, pair.publicKey, algorithm);
        const key = { publicKeyDer, wrappedKey: null, residentId: id, wrapMechanism: null, masterKeyLabel: this.config.masterKeyLabel };
        return { ...key, seal: this.rowSeals.seal(s, { keyId, algorithm, ...key }) };
      } catch (err) {
        this.destroy(s, pair.privateKey);
        throw err;
      } finally {
        this.destroy(s, pair.publicKey);
      }
    }));
  }

  /** Removes the token object of a resident key that lost a keygen race to another driver. */
  async discard(key: GeneratedKey): Promise<void> {
    const id = key.residentId;
    if (!id) return; // a wrapped key exists only as its blob: nothing in the HSM to remove
    await this.oneTokenWriteAtATime(() =>
      this.pool.use(async (s) => {
        for (const h of findObjects(this.library.lib, s, residentKeyQuery(id))) this.destroy(s, h);
      }),
    );
  }

  private oneTokenWriteAtATime<T>(write: () => Promise<T>): Promise<T> {
    const result = this.tokenWrites.then(write, write);
    this.tokenWrites = result.catch(() => undefined);
    return result;
  }

  /** Signs with a stored key: unwrap into a session object, sign, destroy; or use the resident key. */
  async sign(record: KeyRecord, req: SignRequest): Promise<Buffer> {
    try {
      return await this.signOnce(record, req);
    } catch (err) {
      if (!(err instanceof ResidentKeyMissing) || Date.now() - this.lastResidentRefresh < RESIDENT_REFRESH_INTERVAL_MS) throw err;
      // SoftHSM keeps a per-process index of token objects and was seen to miss one another
      // process had just created, until C_Initialize rebuilt it. Re-initialise (at most once a
      // minute, so a row whose key is really gone cannot stall the driver) and look again.
      this.lastResidentRefresh = Date.now();
      this.log.warn({ keyId: record.keyId }, 'resident key not found; re-initialising the library to look again');
      await this.pool.reinitialize();
      return this.signOnce(record, req);
    }
  }

  private signOnce(record: KeyRecord, req: SignRequest): Promise<Buffer> {
    const lib = this.library.lib;
    return this.pool.use(async (s) => {
      if (record.residentId) {
        this.rowSeals.check(s, record);
        const [key] = findObjects(lib, s, residentKeyQuery(record.residentId), 1);
        if (!key) throw new ResidentKeyMissing(`resident key for ${record.keyId} is missing from the token`);
        return this.calls.time('C_Sign', () => sign(lib, s, key, req));
      }
      const { wrappedKey, wrapMechanism } = record;
      if (!wrappedKey || !wrapMechanism) throw new KeyIntegrityError(`stored row for ${record.keyId} has no key material`);
      const deps = {
        lib,
        cache: this.pool.keyCache(s),
        masterKey: () => this.masterKeys.forRow(s, record),
        calls: this.calls,
        destroy: (object: pkcs11.Handle) => this.destroy(s, object),
        stats: this.keyCacheStats,
        log: this.log,
        checkSeal: () => this.rowSeals.check(s, record),
      };
      return signWrapped(deps, s, { ...record, wrappedKey, wrapMechanism }, req);
    });
  }

  /** How long the calls doing jobs' work take (the driver's metrics listen). */
  readonly calls = new CallTimer();

  /** Signs served from the key cache, and signs that had to unwrap while it was on. */
  readonly keyCacheStats = { hits: 0, misses: 0 };

  async health(): Promise<HsmHealth> {
    const started = performance.now();
    const base = { library: '', tokenLabel: this.config.selector.label ?? '', tokenSerial: this.config.selector.serial ?? '' };
    let tokenLost = false;
    try {
      // A round trip to the token itself, not just to the library's session table.
      await this.pool.use(async (s) => {
        this.library.lib.C_GetSessionInfo(s);
        try {
          this.library.lib.C_GetTokenInfo(this.pool.tokenInfo.slot);
        } catch (err) {
          tokenLost = true;
          throw asHsmError(err, 'C_GetTokenInfo');
        }
      });
      base.library = this.libraryDescription; // after use(): it re-initialises a library that was lost
      const token = this.pool.tokenInfo;
      return { ok: true, ...base, tokenLabel: token.label, tokenSerial: token.serial, latencyMs: elapsed(started) };
    } catch (err) {
      // A token that stops answering is only seen again after C_Finalize/C_Initialize (SoftHSM
      // whose storage went away; network HSMs after an outage): re-initialise for the next check.
      if (tokenLost) await this.pool.reinitialize().catch(() => undefined);
      return { ok: false, ...base, latencyMs: elapsed(started), error: asHsmError(err, 'health').message };
    }
  }

  /** Throws HSM_UNAVAILABLE, with the ceremony command, when the integrity key is not on the token. */
  checkIntegrityKey(): Promise<void> {
    return this.pool.use(async (s) => void this.integrityKey.find(s));
  }

  /** HMAC-SHA256 of `data` under the integrity key, inside the HSM. */
  async seal(data: Buffer): Promise<Buffer> {
    return (await this.sealAll([data]))[0]!;
  }

  /** Seals of several inputs on one session: a group of audit records costs one pool round. */
  sealAll(inputs: readonly Buffer[]): Promise<Buffer[]> {
    return this.pool.use(async (s) => inputs.map((data) => this.integrityKey.seal(s, data)));
  }

  /**
   * `keys rewrap`: the row's key, unwrapped inside the HSM under the row's master key (after its
   * seal is checked), wrapped under `to`, and destroyed. The caller checks that the new blob signs.
   */
  rewrapBlob(row: KeyRecord & { wrappedKey: Buffer; wrapMechanism: string }, to: { masterKeyLabel: string; wrapMechanism: string }): Promise<Buffer> {
    const lib = this.library.lib;
    return this.pool.use(async (s) => {
      this.rowSeals.check(s, row);
      const target = this.masterKeys.handle(s, to.masterKeyLabel);
      const key = await this.calls.time('C_UnwrapKey', () => unwrapIntoSession(lib, s, wrapMechanismId(row.wrapMechanism), this.masterKeys.forRow(s, row), row.wrappedKey, row.algorithm, rewrapTemplate(row.algorithm)));
      try {
        return await this.calls.time('C_WrapKey', () => wrapKey(lib, s, wrapMechanismId(to.wrapMechanism), target, key));
      } finally {
        this.destroy(s, key);
      }
    });
  }

  /** Throws HSM_UNAVAILABLE, naming the label, unless the token holds exactly one master key so labelled. */
  checkMasterKeyLabel(label: string): Promise<void> {
    return this.pool.use(async (s) => void this.masterKeys.handle(s, label, { fresh: true }));
  }

  /** Seals for existing rows (`keys seal`); throws when the token has no integrity key. */
  sealRows(rows: readonly SealedFields[]): Promise<Buffer[]> {
    return this.sealAll(rows.map(rowSealInput));
  }

  /** Whether `mac` seals `data`, checked inside the HSM. */
  async verifySeal(data: Buffer, mac: Buffer): Promise<boolean> {
    return (await this.verifySeals([{ data, mac }]))[0]!;
  }

  verifySeals(items: ReadonlyArray<{ data: Buffer; mac: Buffer }>): Promise<boolean[]> {
    return this.pool.use(async (s) => items.map(({ data, mac }) => this.integrityKey.verify(s, data, mac)));
  }

  /** Looks the master key up afresh (not from the cache); the error text is safe to report. */
  async checkMasterKeyPresent(): Promise<void> {
    await this.pool.use(async (s) => void this.masterKeys.handle(s, this.config.masterKeyLabel, { fresh: true }));
  }

  /** Session objects alive in this application: every one the driver makes must be gone again. */
  countSessionObjects(): Promise<number> {
    return this.pool.use(async (s) => findObjects(this.library.lib, s, [{ type: pkcs11.CKA_TOKEN, value: false }], 100_000).length);
  }

  async close(): Promise<void> {
    await this.pool.close();
    this.library.close();
  }

  private destroy(session: pkcs11.Handle, object: pkcs11.Handle): void {
    const err = destroyObject(this.library.lib, session, object);
    if (err) this.log.error({ err: err.message }, 'could not destroy a session object');
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}
