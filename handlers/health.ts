// health: the HSM, the master key and the database, each with its own verdict and latency.
// A failing part is reported, not thrown: the job itself succeeds.
import type { AlgorithmMode, JobContext } from '../runtime/context.js';
import type { Algorithm } from '../runtime/crypto/algorithms.js';
import { toWireError } from '../runtime/errors.js';
import { asObject } from './input.js';

export interface HealthOutput {
  ok: boolean;
  version: string;
  uptimeSeconds: number;
  hsm: {
    ok: boolean;
    library: string;
    tokenLabel: string;
    tokenSerial: string;
    latencyMs: number;
    /** How each algorithm's keys are kept on this token: wrapped, resident or unsupported. */
    algorithms?: Partial<Record<Algorithm, AlgorithmMode['mode']>>;
    error?: string;
  };
  masterKey: { ok: boolean; label: string; error?: string };
  /** The HMAC key that seals records; missing, the driver still signs (so it does not count in `ok`). */
  integrityKey: { ok: boolean; label: string; error?: string };
  database: { ok: boolean; kind: string; latencyMs: number; keys?: number; error?: string };
}

export async function health(raw: unknown, ctx: JobContext): Promise<HealthOutput> {
  asObject(raw);
  const [hsm, masterKey, integrityKey, database] = await Promise.all([hsmPart(ctx), masterKeyPart(ctx), integrityKeyPart(ctx), databasePart(ctx)]);
  return {
    ok: hsm.ok && masterKey.ok && database.ok,
    version: ctx.driver.version,
    uptimeSeconds: Math.floor((performance.now() - ctx.driver.startedAt) / 1000),
    hsm,
    masterKey,
    integrityKey,
    database,
  };
}

async function hsmPart(ctx: JobContext): Promise<HealthOutput['hsm']> {
  const h = await ctx.hsm.health();
  if (!h.ok) return h;
  try {
    const modes = await ctx.hsm.allModes();
    const algorithms: Partial<Record<Algorithm, AlgorithmMode['mode']>> = {};
    for (const [alg, m] of Object.entries(modes)) algorithms[alg as Algorithm] = m.mode;
    return { ...h, algorithms };
  } catch (err) {
    return { ...h, ok: false, error: toWireError(err).message };
  }
}

async function masterKeyPart(ctx: JobContext): Promise<HealthOutput['masterKey']> {
  const label = ctx.hsm.masterKeyLabel;
  try {
    await ctx.hsm.checkMasterKeyPresent();
    return { ok: true, label };
  } catch (err) {
    return { ok: false, label, error: toWireError(err).message };
  }
}

async function integrityKeyPart(ctx: JobContext): Promise<HealthOutput['integrityKey']> {
  const label = ctx.hsm.integrityKey.label;
  try {
    await ctx.hsm.checkIntegrityKey();
    return { ok: true, label };
  } catch (err) {
    return { ok: false, label, error: toWireError(err).message };
  }
}

async function databasePart(ctx: JobContext): Promise<HealthOutput['database']> {
  const started = performance.now();
  const kind = ctx.store.kind;
  try {
    await ctx.store.ping();
    const latencyMs = Math.round((performance.now() - started) * 10) / 10;
    return { ok: true, kind, latencyMs, keys: await ctx.store.countKeys() };
  } catch (err) {
    return { ok: false, kind, latencyMs: Math.round(performance.now() - started), error: toWireError(err).message };
  }
}
