// Opens the real SoftHSM2 token made by global-setup, and builds job contexts for handlers.
import pino from 'pino';
import type { JobContext } from '../../runtime/context.js';
import { resolveHsmConfig, settingsFrom, type Settings } from '../../runtime/config.js';
import { Hsm } from '../../runtime/hsm/hsm.js';
import type { HsmPort } from '../../runtime/context.js';
import type { WrappedKeyStore } from '../../runtime/store/store.js';

export const silentLog = pino({ level: 'silent' });

export function testHsmConfig(overrides: Settings = {}) {
  return resolveHsmConfig({ ...settingsFrom({}, process.env), ...overrides }, { ...process.env });
}

export function openTestHsm(overrides: Settings = {}): Promise<Hsm> {
  return Hsm.open(testHsmConfig(overrides), silentLog);
}

export function contextFor(hsm: HsmPort, store: WrappedKeyStore, log = silentLog): JobContext {
  return {
    jobId: 'test-job',
    attempt: 1,
    signal: new AbortController().signal,
    log,
    hsm,
    store,
    driver: { version: 'test', startedAt: performance.now() },
    audit: () => {},
  };
}
