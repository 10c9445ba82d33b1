// Runs one handler once, outside the poll loop: for testing and scripting. Prints exactly one
// JSON line on stdout, {"output": …} (exit 0) or {"error": {code, message, retryable}} (exit 1).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { handlerFor } from '../../handlers/index.js';
import { AUDITED_KINDS, auditEntryFor, localAuditTrail } from '../audit/trail.js';
import type { AuditFacts } from '../context.js';
import { auditTrailOn, resolveHsmConfig, resolveStoreOptions, type Settings } from '../config.js';
import { ConfigError, toWireError } from '../errors.js';
import { Hsm } from '../hsm/hsm.js';
import { UnavailableHsm } from '../hsm/unavailable.js';
import { openStore } from '../store/index.js';
import { storeKind, UnavailableStore } from '../store/unavailable.js';
import type { WrappedKeyStore } from '../store/store.js';
import { VERSION } from '../version.js';

export interface OneShotResult {
  line: string;
  exitCode: 0 | 1;
}

export async function runOneShot(kind: string, input: unknown, settings: Settings, env: NodeJS.ProcessEnv, log: Logger): Promise<OneShotResult> {
  const startedAt = performance.now();
  const hsmConfig = resolveHsmConfig(settings, env);
  const storeOptions = resolveStoreOptions(settings, env);
  const audited = auditTrailOn(settings);
  let hsm: Hsm | undefined;
  let store: WrappedKeyStore | undefined;
  try {
    const handler = handlerFor(kind);
    // health reports a part that is down instead of failing; other jobs need every part.
    const [hsmOpen, storeOpen] = await Promise.allSettled([Hsm.open(hsmConfig, log), openStore(storeOptions)]);
    if (hsmOpen.status === 'fulfilled') hsm = hsmOpen.value;
    if (storeOpen.status === 'fulfilled') store = storeOpen.value;
    for (const r of [hsmOpen, storeOpen]) if (r.status === 'rejected' && (r.reason instanceof ConfigError || kind !== 'health')) throw r.reason;
    const hsmPort = hsm ?? new UnavailableHsm(hsmConfig.masterKeyLabel, hsmConfig.selector.label ?? '', (hsmOpen as PromiseRejectedResult).reason, hsmConfig.integrityKeyLabel);
    const storePort = store ?? new UnavailableStore(storeKind(storeOptions), (storeOpen as PromiseRejectedResult).reason);
    const jobId = `cli_${randomUUID()}`;
    const facts: AuditFacts = {};
    const ctx = {
      jobId,
      attempt: 1,
      signal: new AbortController().signal,
      log: log.child({ jobId, kind }),
      hsm: hsmPort,
      store: storePort,
      driver: { version: VERSION, startedAt },
      audit: (more: AuditFacts) => void Object.assign(facts, more),
    };
    const outcome = await handler(input, ctx).then((output) => ({ output }), (failure: unknown) => ({ failure }));
    const code = 'failure' in outcome ? toWireError(outcome.failure).code : undefined;
    if (hsm && store && audited) await recordOneShot(hsm, store, log, { id: jobId, attempt: 1, kind }, facts, code);
    if ('failure' in outcome) throw outcome.failure;
    const { output } = outcome;
    return { line: JSON.stringify({ output }), exitCode: 0 };
  } catch (err) {
    if (err instanceof ConfigError) throw err; // a start-up problem: main prints it and exits 2
    const error = toWireError(err, [hsmConfig.pin]);
    log.warn({ code: error.code, message: error.message }, 'job failed');
    return { line: JSON.stringify({ error }), exitCode: 1 };
  } finally {
    await Promise.allSettled([hsm?.close(), store?.close()]);
  }
}

/** A one-shot keygen or sign is audited like a driver's job, in a chain of its own, by the local user. */
async function recordOneShot(hsm: Hsm, store: WrappedKeyStore, log: Logger, job: { id: string; attempt: number; kind: string }, facts: AuditFacts, code: string | undefined): Promise<void> {
  if (!AUDITED_KINDS.has(job.kind)) return;
  await localAuditTrail(store.audit, hsm, log).append(auditEntryFor(job, facts, code));
}
