// An HsmPort for a token that could not be opened: every operation fails with HSM_UNAVAILABLE
// and health reports why, so a health job still answers with each part's verdict.
import type { HsmPort } from '../context.js';
import type { Algorithm } from '../crypto/algorithms.js';
import { DriverError, HsmError } from '../errors.js';
import type { AlgorithmMode, GeneratedKey, HsmHealth } from './hsm.js';

export class UnavailableHsm implements HsmPort {
  readonly reason: string;
  constructor(
    readonly masterKeyLabel: string,
    private readonly tokenLabel: string,
    cause: unknown,
    integrityKeyLabel = 'integrity',
  ) {
    this.reason = cause instanceof DriverError ? cause.message : 'token unavailable';
    this.integrityKey = { label: integrityKeyLabel };
  }

  generate(_algorithm: Algorithm, _keyId: string): Promise<GeneratedKey> {
    return Promise.reject(this.error());
  }
  discard(): Promise<void> {
    return Promise.reject(this.error());
  }
  sign(): Promise<Buffer> {
    return Promise.reject(this.error());
  }
  checkMasterKeyPresent(): Promise<void> {
    return Promise.reject(this.error());
  }
  readonly integrityKey: { readonly label: string };
  checkIntegrityKey(): Promise<void> {
    return Promise.reject(this.error());
  }
  allModes(): Promise<Record<Algorithm, AlgorithmMode>> {
    return Promise.reject(this.error());
  }
  async health(): Promise<HsmHealth> {
    return { ok: false, library: '', tokenLabel: this.tokenLabel, tokenSerial: '', latencyMs: 0, error: this.reason };
  }

  private error(): Error {
    return new HsmError('HSM_UNAVAILABLE', this.reason, -1, 'open');
  }
}
