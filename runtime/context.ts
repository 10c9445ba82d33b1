// What a handler is given for one job: who it is for, a logger, and narrow views of the HSM and
// the key store. Handlers hold no state of their own; everything stateful arrives here.
import type { Logger } from 'pino';
import type { Algorithm } from './crypto/algorithms.js';
import type { AlgorithmMode, GeneratedKey, HsmHealth, SignRequest } from './hsm/hsm.js';
import type { KeyRecord, WrappedKeyStore } from './store/store.js';

export type { AlgorithmMode, GeneratedKey, HsmHealth, SignRequest } from './hsm/hsm.js';

/** The HSM operations handlers may use; implemented by runtime/hsm/hsm.ts. */
export interface HsmPort {
  readonly masterKeyLabel: string;
  generate(algorithm: Algorithm, keyId: string): Promise<GeneratedKey>;
  discard(key: GeneratedKey): Promise<void>;
  sign(record: KeyRecord, request: SignRequest): Promise<Buffer>;
  health(): Promise<HsmHealth>;
  checkMasterKeyPresent(): Promise<void>;
  readonly integrityKey: { readonly label: string };
  checkIntegrityKey(): Promise<void>;
  allModes(): Promise<Record<Algorithm, AlgorithmMode>>;
}

export interface DriverInfo {
  version: string;
  /** performance.now() at process start, for uptime. */
  startedAt: number;
}

/** What a handler tells the audit trail about its job; the dispatcher writes the record. */
export interface AuditFacts {
  keyId?: string;
  algorithm?: string;
  /** The bytes a sign job asked to sign; the record keeps their SHA-256. */
  signed?: Buffer;
}

export interface JobContext {
  jobId: string;
  attempt: number;
  signal: AbortSignal;
  log: Logger;
  hsm: HsmPort;
  store: WrappedKeyStore;
  driver: DriverInfo;
  /** Adds to this job's audit facts (later calls add to earlier ones). */
  audit(facts: AuditFacts): void;
}
