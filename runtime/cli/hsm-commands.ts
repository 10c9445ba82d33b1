// `hsm list` (slots, tokens, the mechanisms that matter) and `hsm test` (login, master key
// posture, a keygen → sign → verify self-test per algorithm through the real handlers).
import type { Logger } from 'pino';
import { keygen } from '../../handlers/keygen.js';
import { sign } from '../../handlers/sign.js';
import type { JobContext } from '../context.js';
import { ALGORITHMS, ALGORITHM_SPECS, type Algorithm } from '../crypto/algorithms.js';
import { resolveHsmConfig, resolveModule, type Settings } from '../config.js';
import { toWireError } from '../errors.js';
import { Hsm } from '../hsm/hsm.js';
import { LISTED_MECHANISMS } from '../hsm/mechanisms.js';
import { Pkcs11Library } from '../hsm/module.js';
import { MemoryStore } from '../store/memory.js';
import { VERSION } from '../version.js';

export function hsmList(settings: Settings, env: NodeJS.ProcessEnv): string[] {
  const library = new Pkcs11Library(resolveModule(settings, env));
  try {
    library.initialize();
    const info = library.info();
    const lines = [`module ${library.path}: ${info.manufacturer} ${info.description} ${info.version} (Cryptoki ${info.cryptoki})`];
    for (const t of library.listTokens()) {
      if (!t.tokenPresent) {
        lines.push(`slot ${t.slotId}: no token (${t.slotDescription})`);
        continue;
      }
      lines.push(`slot ${t.slotId}: token "${t.label}" serial ${t.serial} model ${t.model}${t.initialized ? '' : ' (not initialised)'}`);
      const mechanisms = new Set(library.lib.C_GetMechanismList(t.slot));
      const names = Object.entries(LISTED_MECHANISMS).map(([name, id]) => `${name} ${mechanisms.has(id) ? 'yes' : 'no'}`);
      lines.push(`  mechanisms: ${names.join(', ')}`);
    }
    return lines;
  } finally {
    library.close();
  }
}

export interface SelfTestRow {
  algorithm: Algorithm;
  mode: string;
  ok: boolean;
  ms: number;
  detail: string;
}

/** Returns the table's rows; a row fails when a supported algorithm cannot keygen, sign and verify. */
export async function hsmTest(settings: Settings, env: NodeJS.ProcessEnv, log: Logger): Promise<{ lines: string[]; ok: boolean }> {
  const hsm = await Hsm.open(resolveHsmConfig(settings, env), log);
  const { label, serial } = hsm.pool.tokenInfo;
  const store = new MemoryStore();
  const rows: SelfTestRow[] = [];
  try {
    const ctx: JobContext = { jobId: 'hsm-test', attempt: 1, signal: new AbortController().signal, log, hsm, store, driver: { version: VERSION, startedAt: performance.now() }, audit: () => {} };
    for (const algorithm of ALGORITHMS) rows.push(await selfTest(algorithm, ctx, hsm));
  } finally {
    for (const record of store.all()) await hsm.discard(record).catch(() => undefined);
    await hsm.close();
  }
  const posture = hsm.masterKeyWarnings.length === 0 ? ['master key posture: ok (token, private, sensitive, not extractable, wrap and unwrap)'] : hsm.masterKeyWarnings.map((w) => `master key posture: WEAK: ${w}`);
  const lines = [
    `login ok; token "${label}" serial ${serial}; master key "${hsm.config.masterKeyLabel}"; wrap ${hsm.config.wrapMechanism}`,
    ...posture,
    'algorithm        mode         result  ms     detail',
    ...rows.map((r) => `${r.algorithm.padEnd(16)} ${r.mode.padEnd(12)} ${(r.ok ? 'ok' : 'FAIL').padEnd(7)} ${String(r.ms).padEnd(6)} ${r.detail}`),
  ];
  return { lines, ok: rows.every((r) => r.ok) };
}

async function selfTest(algorithm: Algorithm, ctx: JobContext, hsm: Hsm): Promise<SelfTestRow> {
  const started = performance.now();
  const mode = await hsm.modeOf(algorithm);
  if (mode.mode === 'unsupported') return { algorithm, mode: mode.mode, ok: true, ms: 0, detail: mode.reason };
  const keyId = `hsm-test.${algorithm}.${Date.now()}`;
  try {
    await keygen({ keyId, algorithm }, ctx);
    const spec = ALGORITHM_SPECS[algorithm];
    const data = Buffer.from('hsm-driver self-test').toString('hex');
    const input =
      spec.family === 'ecdsa'
        ? { keyId, data, encoding: 'message', hash: 'sha256' }
        : spec.family === 'eddsa'
          ? { keyId, data, encoding: 'message' }
          : { keyId, data, encoding: 'message', hash: 'sha256', padding: 'pss' };
    await sign(input, ctx);
    return { algorithm, mode: mode.mode, ok: true, ms: Math.round(performance.now() - started), detail: 'keygen, sign, verify' };
  } catch (err) {
    const e = toWireError(err, [hsm.config.pin]);
    return { algorithm, mode: mode.mode, ok: false, ms: Math.round(performance.now() - started), detail: `${e.code}: ${e.message}` };
  }
}
