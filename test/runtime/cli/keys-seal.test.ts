// `hsm-driver keys seal` on both stores: rows written before row seals (their seal NULL, as
// migration 3 leaves them) are refused under --require-sealed-rows until keys seal has sealed
// them; a second run finds nothing to do; every seal it made is in the audit trail.
import { describe, expect, it } from 'vitest';
import { useCli } from '../../support/cli.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { postgresTamper, sqliteTamper } from '../../support/tamper.js';

const cli = useCli();
const pgUrl = usePostgresDatabase();

const unseal = (kind: 'sqlite' | 'postgres', store: string[]) =>
  (kind === 'sqlite' ? sqliteTamper(store[1]!) : postgresTamper(pgUrl))('UPDATE keys SET seal = NULL');

describe.each(['sqlite', 'postgres'] as const)('keys seal on %s', (kind) => {
  it('seals old rows once; --require-sealed-rows refuses them before and signs after', async () => {
    const store = kind === 'sqlite' ? cli.sqlite() : ['--postgres-url', pgUrl()];
    const keyIds = ['old.1', 'old.2', 'old.3'];
    for (const keyId of keyIds) expect(cli.job('keygen', { keyId, algorithm: 'ecdsa-secp256k1' }, { store }).output).toBeDefined();
    await unseal(kind, store);
    const signInput = { keyId: 'old.2', data: '44'.repeat(32), encoding: 'digest' };

    expect(cli.job('sign', signInput, { store }).output?.signature).toMatch(/^[0-9a-f]{128}$/);
    const refused = cli.job('sign', signInput, { store: [...store, '--require-sealed-rows'] });
    expect(refused.error).toMatchObject({ code: 'KEY_INTEGRITY', message: expect.stringContaining('hsm-driver keys seal') });

    const first = cli.run(['keys', 'seal', ...store]);
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('keys seal: 3 rows sealed, 0 already sealed, 0 changed while sealing');
    const again = cli.run(['keys', 'seal', ...store]);
    expect(again.stdout).toContain('keys seal: 0 rows sealed, 3 already sealed');

    expect(cli.job('sign', signInput, { store: [...store, '--require-sealed-rows'] }).output?.signature).toMatch(/^[0-9a-f]{128}$/);
    const verify = cli.run(['audit', 'verify', ...store]);
    expect(verify.status).toBe(0);
    const exported = cli.run(['audit', 'export', ...store]).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(exported.filter((r) => r.kind === 'keys-seal').map((r) => r.keyId).sort()).toEqual(keyIds);
  });
});
