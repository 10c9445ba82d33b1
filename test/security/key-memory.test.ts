// No private key bytes in a running driver's memory. A real `hsm-driver run` makes keys and
// signs with each many times through the job server; the test unwraps the same blobs itself,
// extractable (as anyone with the PIN could), to learn the private values, then searches (a) the
// driver's whole memory, every page it holds (what a core dump holds), after each key's signs,
// and (b) a V8 heap snapshot of it, for those values as bytes, byte-reversed (big-number limbs),
// hex, base64, UTF-16 and 16-byte pieces. Positive controls in the same searches: the PIN, which
// the driver keeps for re-login, and the public points, kept to verify signatures.
//
// SoftHSM runs inside the driver's process (a hardware HSM does not), so the whole-memory search
// also sees what the token library leaves, and during a C_Sign the key is necessarily in this
// process: the searches run with the driver idle. SoftHSM 2.6.1 with OpenSSL 3.0 frees the
// PKCS#8 plaintext of every unwrapped key without clearing it, in the malloc arenas of the
// libuv worker threads (pkcs11js alone, without the driver, does the same): with glibc's default
// allocator an RSA key's d, p, q, … were there after every run with the key cache off, a
// secp256k1 scalar after 3 of 8 runs with it on. Those are freed chunks nobody holds, so the
// driver runs here with glibc filling freed chunks (glibc.malloc.perturb, tcache off): what the
// search finds then is a copy something still holds, or one outside malloc (V8's heap, stacks).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { tokenEnv, tokenPin } from '../support/cli.js';
import { TARGETS, spawnDriver, stateIs, useRunFixture, type DriverTarget } from '../support/driver.js';
import { extractStoredKey, matchesPublicKey } from '../support/extract-key.js';
import { heapSnapshotOptions, scanProcessMemory, takeHeapSnapshot } from '../support/process-memory.js';
import { findPatterns, isRawForm, patternsFor, type Pattern } from '../support/secrets.js';

const fx = useRunFixture('key-memory', ['driver']);
const dir = mkdtempSync(join(tmpdir(), 'key-memory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIGNS_PER_KEY = 60;
const KEYS = [
  { algorithm: 'ecdsa-secp256k1', sign: (i: number) => ({ data: (i + 1).toString(16).padStart(64, '0'), encoding: 'digest' }) },
  { algorithm: 'ecdsa-p256', sign: (i: number) => ({ data: (i + 7).toString(16).padStart(64, 'a'), encoding: 'digest' }) },
  { algorithm: 'ecdsa-p384', sign: (i: number) => ({ data: `${i}`.padStart(8, '0').repeat(4), encoding: 'message', hash: 'sha384' }) },
  { algorithm: 'rsa-2048', sign: (i: number) => ({ data: `${i}`.padStart(8, '0').repeat(8), encoding: 'message', hash: 'sha256', padding: i % 2 ? 'pss' : 'pkcs1' }) },
] as const;
/** glibc fills every freed chunk (tcache off, so small ones too): what stays is what something holds. */
const SCRUB_FREED = 'glibc.malloc.perturb=165:glibc.malloc.tcache_count=0';

async function searchDriverMemory(target: DriverTarget, cacheSize: number): Promise<void> {
  const sqlitePath = fx.freshDb();
  const diag = mkdtempSync(join(dir, `${target}-`));
  const driver = (fx.driver = spawnDriver({
    target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath,
    args: ['--key-cache-size', String(cacheSize), '--sessions', '2'],
    env: { NODE_OPTIONS: heapSnapshotOptions(diag), LOG_LEVEL: 'info', GLIBC_TUNABLES: SCRUB_FREED },
  }));
  await driver.waitForLog(stateIs('running'));

  const made = await Promise.all(
    KEYS.map(async (k, n) => {
      const keyId = `mem.${target}.${cacheSize}.${n}`;
      const job = await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId, algorithm: k.algorithm }), 60_000);
      const output = job.result as { publicKeyDer: string; publicKey?: string } | undefined;
      expect(output, JSON.stringify(job.error)).toBeDefined();
      return { ...k, keyId, publicKeyDer: Buffer.from(output!.publicKeyDer, 'base64'), point: output!.publicKey };
    }),
  );
  const token = tokenEnv('good');
  const patterns = made.map((k) => {
    const secrets = extractStoredKey(sqlitePath, k.keyId, { PKCS11_MODULE: token.PKCS11_MODULE!, TOKEN_LABEL: token.TOKEN_LABEL!, pin: tokenPin('good') });
    // The values searched for really are this key's: a wrong extraction would make every search pass.
    expect(matchesPublicKey(secrets, k.publicKeyDer), k.algorithm).toBe(true);
    return Object.entries(secrets.values).flatMap(([part, value]) => patternsFor(`${k.algorithm}.${part}`, value, { pieces: 16, reversed: true }));
  });
  const all = patterns.flat();
  const controls: Pattern[] = [
    { name: 'control:pin', bytes: Buffer.from(tokenPin('good')) },
    ...made.filter((k) => k.point).map((k) => ({ name: `control:${k.algorithm}.point`, bytes: Buffer.from(k.point!, 'hex') })),
  ];

  // (a) After each key's signs, the whole process, stopped while it is read.
  for (const k of made) {
    const done = await Promise.all(
      Array.from({ length: SIGNS_PER_KEY }, (_, i) => fx.server.waitForCompletion(fx.server.enqueue('sign', { keyId: k.keyId, ...k.sign(i) }), 120_000)),
    );
    expect(done.filter((j) => j.result === undefined).map((j) => j.error)).toEqual([]);
    const memory = scanProcessMemory(driver.proc.pid!, [...controls, ...all]);
    expect(memory.unreadable).toEqual([]);
    expect(memory.bytesRead).toBeGreaterThan(16 << 20);
    const found = [...memory.hits.keys()];
    expect(found.filter((name) => name.startsWith('control:')).sort(), 'controls in memory').toEqual(controls.map((c) => c.name).sort());
    const leaks = found.filter((name) => !name.startsWith('control:'));
    expect(Object.fromEntries(leaks.map((name) => [name, memory.where.get(name)])), `after the ${k.algorithm} signs`).toEqual({});
  }

  // (b) Every string on the JavaScript heap, from a V8 heap snapshot the driver writes itself.
  const snapshot = await takeHeapSnapshot(driver.proc.pid!, diag);
  const strings = snapshot.strings.join('\n');
  expect(findPatterns(strings, controls.slice(0, 1))).toEqual(['control:pin']);
  expect(findPatterns(strings, all.filter((p) => !isRawForm(p)))).toEqual([]);
  // A string holding raw bytes would be Latin-1 (one byte per character) on the heap.
  expect(findPatterns(Buffer.from(strings, 'latin1'), all.filter(isRawForm))).toEqual([]);
  rmSync(snapshot.file);

  expect((await driver.stop()).code).toBe(0);
}

describe.each(TARGETS)('private keys in the memory of hsm-driver run as the %s', (target) => {
  test('stateless signing (key cache off): no copy of any key in memory or on the JavaScript heap', { timeout: 180_000 }, () =>
    searchDriverMemory(target, 0));

  test('key cache on: no copy of any key in memory or on the JavaScript heap', { timeout: 180_000 }, () => searchDriverMemory(target, 8));
});
