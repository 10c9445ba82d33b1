// Every algorithm through the built CLI, on the good and the weak test token and on both key
// stores: a one-shot keygen, then one-shot signs in every form PROTOCOL.md allows, each
// signature checked by the openssl command-line tool (not by our own verify code).
import { spawnSync } from 'node:child_process';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { p256 } from '@noble/curves/nist.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_ALGORITHMS, useCli, type ProtocolAlgorithm, type TokenName } from '../../support/cli.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { ORDER } from '../crypto/keys.js';

const cli = useCli();
const postgresUrl = usePostgresDatabase();

type Hash = 'sha256' | 'sha384' | 'sha512' | 'keccak256';
interface SignForm {
  encoding: 'digest' | 'message';
  hash?: Hash;
  padding?: 'pss' | 'pkcs1';
}

/** PROTOCOL.md's keygen table, plus what a verifier needs (order, recovery). */
const EC = {
  'ecdsa-secp256k1': { namedCurve: 'secp256k1', size: 32, order: ORDER['ecdsa-secp256k1'], recovery: secp256k1 },
  'ecdsa-p256': { namedCurve: 'prime256v1', size: 32, order: ORDER['ecdsa-p256'], recovery: p256 },
  'ecdsa-p384': { namedCurve: 'secp384r1', size: 48, order: ORDER['ecdsa-p384'], recovery: undefined },
} as const;
const RSA_BITS = { 'rsa-2048': 2048, 'rsa-3072': 3072, 'rsa-4096': 4096 } as const;
type EcAlgorithm = keyof typeof EC;
const isEc = (a: ProtocolAlgorithm): a is EcAlgorithm => a in EC;
const isRsa = (a: ProtocolAlgorithm): a is keyof typeof RSA_BITS => a in RSA_BITS;

/** PROTOCOL.md's sign table, every row and hash. */
function signForms(algorithm: ProtocolAlgorithm): SignForm[] {
  if (isEc(algorithm)) return [{ encoding: 'digest' }, ...(['sha256', 'sha384', 'sha512', 'keccak256'] as const).map((hash) => ({ encoding: 'message' as const, hash }))];
  if (algorithm === 'eddsa-ed25519') return [{ encoding: 'message' }];
  return [
    { encoding: 'message', hash: 'sha256' }, // padding absent: PSS
    { encoding: 'message', hash: 'sha256', padding: 'pkcs1' },
    { encoding: 'message', hash: 'sha384', padding: 'pss' },
    { encoding: 'message', hash: 'sha512', padding: 'pkcs1' },
  ];
}

const digestOf = (hash: Hash, data: Buffer): Buffer => (hash === 'keccak256' ? Buffer.from(keccak_256(data)) : createHash(hash).update(data).digest());
const flipped = (b: Buffer): Buffer => Buffer.from(b.map((x, i) => (i === 0 ? x ^ 1 : x)));
const fixedHex = (bytes: number) => new RegExp(`^[0-9a-f]{${bytes * 2}}$`);

function openssl(args: string[]): string | undefined {
  const res = spawnSync('openssl', args, { encoding: 'utf8' });
  return res.status === 0 ? res.stdout : undefined;
}

/** Writes the inputs of one openssl check; returns the file paths. */
function files(pem: string, data: Buffer, signature: Buffer) {
  const f = { pem: cli.path('pub.pem'), data: cli.path('data.bin'), sig: cli.path('sig.bin') };
  writeFileSync(f.pem, pem);
  writeFileSync(f.data, data);
  writeFileSync(f.sig, signature);
  return f;
}

function opensslVerifyEcdsa(pem: string, digest: Buffer, der: Buffer): boolean {
  const f = files(pem, digest, der);
  return openssl(['pkeyutl', '-verify', '-pubin', '-inkey', f.pem, '-in', f.data, '-sigfile', f.sig])?.includes('Signature Verified Successfully') ?? false;
}

function opensslVerifyEd25519(pem: string, message: Buffer, signature: Buffer): boolean {
  const f = files(pem, message, signature);
  return openssl(['pkeyutl', '-verify', '-pubin', '-inkey', f.pem, '-rawin', '-in', f.data, '-sigfile', f.sig])?.includes('Signature Verified Successfully') ?? false;
}

function opensslVerifyRsa(pem: string, message: Buffer, signature: Buffer, hash: string, padding: 'pss' | 'pkcs1'): boolean {
  const f = files(pem, message, signature);
  const pss = padding === 'pss' ? ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:digest'] : [];
  return openssl(['dgst', `-${hash}`, ...pss, '-verify', f.pem, '-signature', f.sig, f.data])?.includes('Verified OK') ?? false;
}

/** The two INTEGERs of a DER ECDSA-Sig-Value, as openssl's parser reads them. */
function opensslDerIntegers(der: Buffer): bigint[] {
  const file = cli.path('sig.der');
  writeFileSync(file, der);
  const out = openssl(['asn1parse', '-inform', 'DER', '-in', file]) ?? '';
  return [...out.matchAll(/INTEGER\s+:([0-9A-F]+)/g)].map((m) => BigInt(`0x${m[1]}`));
}

const pemOf = (der: Buffer) => `-----BEGIN PUBLIC KEY-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`;

/** publicKey and publicKeyDer as PROTOCOL.md's keygen table says, read by node's own parser. */
function checkPublicKey(algorithm: ProtocolAlgorithm, spki: Buffer, publicKey: unknown): void {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  const jwk = key.export({ format: 'jwk' });
  if (isEc(algorithm)) {
    const { namedCurve, size } = EC[algorithm];
    expect(key.asymmetricKeyDetails?.namedCurve).toBe(namedCurve);
    const coord = (v: string | undefined) => Buffer.from(v ?? '', 'base64url').toString('hex').padStart(size * 2, '0');
    expect(publicKey).toMatch(fixedHex(1 + 2 * size));
    expect(publicKey).toBe(`04${coord(jwk.x)}${coord(jwk.y)}`);
  } else if (isRsa(algorithm)) {
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails).toMatchObject({ modulusLength: RSA_BITS[algorithm], publicExponent: 65537n });
    expect(publicKey).toBeUndefined();
  } else {
    expect(key.asymmetricKeyType).toBe('ed25519');
    expect(publicKey).toMatch(fixedHex(32));
    expect(publicKey).toBe(Buffer.from(jwk.x ?? '', 'base64url').toString('hex'));
  }
}

function checkEcdsa(algorithm: EcAlgorithm, out: Record<string, any>, digest: Buffer, pem: string, publicKey: string): void {
  const { size, order, recovery } = EC[algorithm];
  expect(Object.keys(out).sort()).toEqual(recovery ? ['der', 'r', 'recoveryId', 's', 'signature'] : ['der', 'r', 's', 'signature']);
  expect(out.r).toMatch(fixedHex(size));
  expect(out.s).toMatch(fixedHex(size));
  expect(out.signature).toBe(out.r + out.s);
  const [r, s] = [BigInt(`0x${out.r}`), BigInt(`0x${out.s}`)];
  expect(s > 0n && s <= order / 2n, 's is in the low half').toBe(true);
  const der = Buffer.from(out.der, 'hex');
  expect(opensslDerIntegers(der)).toEqual([r, s]);
  expect(opensslVerifyEcdsa(pem, digest, der)).toBe(true);
  expect(opensslVerifyEcdsa(pem, flipped(digest), der)).toBe(false);
  if (recovery) {
    expect([0, 1]).toContain(out.recoveryId);
    const sig = recovery.Signature.fromHex(out.signature, 'compact').addRecoveryBit(out.recoveryId);
    expect(Buffer.from(sig.recoverPublicKey(digest).toBytes(false)).toString('hex')).toBe(publicKey);
  }
}

function checkSignature(algorithm: ProtocolAlgorithm, form: SignForm, data: Buffer, out: Record<string, any>, pem: string, publicKey: string): void {
  if (isEc(algorithm)) return checkEcdsa(algorithm, out, form.hash ? digestOf(form.hash, data) : data, pem, publicKey);
  expect(Object.keys(out)).toEqual(['signature']);
  const signature = Buffer.from(out.signature, 'hex');
  if (isRsa(algorithm)) {
    expect(out.signature).toMatch(fixedHex(RSA_BITS[algorithm] / 8));
    const padding = form.padding ?? 'pss';
    expect(opensslVerifyRsa(pem, data, signature, form.hash!, padding)).toBe(true);
    expect(opensslVerifyRsa(pem, flipped(data), signature, form.hash!, padding)).toBe(false);
    expect(opensslVerifyRsa(pem, data, signature, form.hash!, padding === 'pss' ? 'pkcs1' : 'pss'), 'the padding asked for').toBe(false);
    return;
  }
  expect(out.signature).toMatch(fixedHex(64));
  expect(opensslVerifyEd25519(pem, data, signature)).toBe(true);
  expect(opensslVerifyEd25519(pem, flipped(data), signature)).toBe(false);
}

const label = (f: SignForm, algorithm: ProtocolAlgorithm) =>
  [f.encoding, f.hash, f.padding ?? (isRsa(algorithm) ? '(padding absent: pss)' : undefined)].filter(Boolean).join(' ');

type StoreName = 'sqlite' | 'postgres';

/** The stored row, read beside the driver: proof the key went to the store asked for, and how. */
async function storedRow(store: StoreName, flags: string[], keyId: string): Promise<Record<string, unknown> | undefined> {
  const sql = 'SELECT algorithm, wrap_mechanism, wrapped_key IS NOT NULL AS wrapped, resident_id IS NOT NULL AS resident FROM keys WHERE key_id = $1';
  if (store === 'sqlite') {
    const db = new DatabaseSync(flags[1]!, { readOnly: true });
    try {
      const row = db.prepare(sql.replace('$1', '?')).get(keyId);
      return row && { ...row, wrapped: row.wrapped === 1, resident: row.resident === 1 };
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: flags[1] });
  await client.connect();
  try {
    return (await client.query(sql, [keyId])).rows[0];
  } finally {
    await client.end();
  }
}

const combos = (['good', 'weak'] as const).flatMap((token: TokenName) => (['sqlite', 'postgres'] as const).map((store: StoreName) => [token, store] as const));

describe.each(combos)('%s token, %s store', (token, store) => {
  // RSA-4096 keygen is slow on SoftHSM; one combination is enough for it.
  const algorithms = PROTOCOL_ALGORITHMS.filter((a) => a !== 'rsa-4096' || (token === 'good' && store === 'sqlite'));

  describe.each(algorithms)('%s', (algorithm) => {
    const keyId = `k_${token}-${store}.${algorithm}:${randomBytes(4).toString('hex')}`;
    let storeFlags: string[] = [];
    let key: Record<string, any> = {};
    beforeAll(() => {
      storeFlags = store === 'sqlite' ? cli.sqlite() : ['--postgres-url', postgresUrl()];
      const res = cli.job('keygen', { keyId, algorithm }, { token, store: storeFlags });
      if (!res.output) throw new Error(`keygen failed: ${JSON.stringify(res.error)}\n${res.stderr}`);
      key = res.output;
    });

    it('keygen answers keyId, algorithm and the public key forms of PROTOCOL.md', () => {
      expect(Object.keys(key).sort()).toEqual(isRsa(algorithm) ? ['algorithm', 'keyId', 'publicKeyDer'] : ['algorithm', 'keyId', 'publicKey', 'publicKeyDer']);
      expect(key).toMatchObject({ keyId, algorithm });
      checkPublicKey(algorithm, Buffer.from(key.publicKeyDer, 'base64'), key.publicKey);
    });

    it(`is stored in ${store}, ${algorithm === 'eddsa-ed25519' ? 'resident (--resident-algorithms)' : 'as a wrapped blob'}`, async () => {
      const resident = algorithm === 'eddsa-ed25519';
      expect(await storedRow(store, storeFlags, keyId)).toEqual({
        algorithm,
        wrap_mechanism: resident ? null : 'aes-key-wrap-pad',
        wrapped: !resident,
        resident,
      });
    });

    it.each(signForms(algorithm).map((f) => [label(f, algorithm), f] as const))(
      'sign %s verifies with openssl',
      (_, form) => {
        const data = randomBytes(form.encoding === 'digest' && isEc(algorithm) ? EC[algorithm].size : 100);
        const res = cli.job('sign', { keyId, data: data.toString('hex'), ...form }, { token, store: storeFlags });
        expect(res.error).toBeUndefined();
        checkSignature(algorithm, form, data, res.output!, pemOf(Buffer.from(key.publicKeyDer, 'base64')), key.publicKey);
      },
    );
  });
});
