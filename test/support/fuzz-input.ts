// fast-check arbitraries for hostile job inputs, built as JSON text (the way a job arrives, so
// nesting can go deeper than JSON.stringify reaches), and the expected outcome of each input
// by PROTOCOL.md alone: which protocol error codes it may end in, or whether it must succeed.
import fc from 'fast-check';

const MiB = 1 << 20;
export const KEY_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export const ALGORITHMS = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048', 'rsa-3072', 'rsa-4096'];
export const HASHES = ['sha256', 'sha384', 'sha512', 'keccak256'];
export const RSA_HASHES = ['sha256', 'sha384', 'sha512'];
export const MAX_DATA_BYTES = 65536;
/** Algorithms fast enough on SoftHSM to generate inside a property (RSA keys come from the pool). */
export const FAST_ALGORITHMS = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519'];

/** One input as JSON text; shows only its start in a counterexample (some are 10 MiB). */
export class JobInput {
  constructor(readonly text: string) {}
  parse(): unknown {
    return JSON.parse(this.text);
  }
  [fc.toStringMethod](): string {
    return this.text.length <= 400 ? this.text : `${this.text.slice(0, 300)}… (${this.text.length} characters)`;
  }
}

const json = (v: unknown): string => JSON.stringify(v);
/** An object's JSON text; `undefined` fields are left out, extras come first so the named fields win. */
export function objectText(fields: Record<string, string | undefined>, extras: Record<string, string> = {}): string {
  const entries = [...Object.entries(extras), ...Object.entries(fields)].filter((e): e is [string, string] => e[1] !== undefined);
  return `{${entries.map(([k, v]) => `${json(k)}:${v}`).join(',')}}`;
}

const HUGE = [
  json('a'.repeat(MiB)),
  json('00'.repeat(MAX_DATA_BYTES + 1)),
  json('0'.repeat(10 * MiB)),
  '['.repeat(100_000) + ']'.repeat(100_000),
  '{"a":'.repeat(10_000) + '0' + '}'.repeat(10_000),
  `[${new Array(200_000).fill(0).join(',')}]`,
];
/** Huge or deeply nested JSON values. */
export const huge = fc.constantFrom(...HUGE);
/** Any JSON value but a string, plus the usual suspects and the huge ones: type confusion. */
export const notAString = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).filter((v) => typeof v !== 'string').map(json),
  fc.constantFrom('null', 'true', 'false', '0', '-1', '1e308', '[]', '{}', '[null]', '{"":""}', '["k"]', '{"keyId":"k"}'),
  huge.filter((t) => !t.startsWith('"')),
);
/** Any JSON value at all. */
export const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 3 }).map(json), notAString, huge);
export const extras = fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'toString', 'prototype')), fc.jsonValue({ maxDepth: 2 }).map(json), { maxKeys: 3 });

/** Valid keyIds the protocol allows, including names an object lookup could trip on. */
export const freshKeyId = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/) },
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', '..', '-', ':', 'a'.repeat(128), 'k:0x00'),
);
/** Strings that are not keyIds: unicode, look-alikes, control characters, edges of the length. */
export const badKeyId = fc.oneof(
  fc.constantFrom('', ' k', 'k ', 'k\n', 'k/1', 'k\\1', 'a'.repeat(129), 'ключ', 'ｋｅｙ', 'k\u200b', 'k\u0000', 'e\u0301', 'é', '\ud800', '\u212a', 'ı', '😀', '\u202ekcab', 'k%2e', 'k*', "k' OR 1=1 --"),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((s) => !KEY_ID.test(s)),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => !KEY_ID.test(s)),
);
export const badKeyIdText = fc.oneof(badKeyId.map(json), notAString);

const NEAR_ALGORITHMS = ['ECDSA-P256', 'ecdsa-p256 ', ' ecdsa-p256', 'ecdsa_p256', 'ecdsa-p521', 'rsa-1024', 'rsa-8192', 'ed25519', 'eddsa-ed448', 'secp256k1', '', 'toString', '__proto__', 'rsa-2048\u0000'];
export const badAlgorithm = fc.oneof(
  fc.constantFrom(...NEAR_ALGORITHMS).map(json),
  fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => !ALGORITHMS.includes(s)).map(json),
  notAString,
  huge,
);

// --- hex, as sign's `data` ---
const bytes = fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 48, maxLength: 48 }), fc.uint8Array({ maxLength: 80 }));
const lowerHex = bytes.map((b) => Buffer.from(b).toString('hex'));
const WHITESPACE = [' ', '\t', '\n', '\r', '\u00a0', '\u2028', '\ufeff', '\u3000'];
const NOT_HEX = ['g', 'G', 'x', 'z', '-', '０', '٠', 'ａ', '\u0000', 'é', '😀', '\ud800'];
const at = (s: string, i: number) => i % (s.length + 1);
/** Hex strings: mostly good, then odd length, 0x, upper and mixed case, whitespace, non-hex, empty, too long. */
export const hexData = fc.oneof(
  { weight: 10, arbitrary: lowerHex },
  lowerHex.map((h) => h.toUpperCase()),
  fc.tuple(lowerHex, fc.nat()).map(([h, seed]) => [...h].map((c, i) => ((seed >> i % 31) & 1 ? c.toUpperCase() : c)).join('')),
  lowerHex.filter((h) => h.length > 0).map((h) => h.slice(1)),
  lowerHex.map((h) => `${h}0`),
  fc.tuple(fc.constantFrom('0x', '0X', '\\x', '#'), lowerHex).map(([p, h]) => p + h),
  fc.tuple(lowerHex, fc.constantFrom(...WHITESPACE), fc.nat()).map(([h, w, i]) => h.slice(0, at(h, i)) + w + h.slice(at(h, i))),
  fc.tuple(lowerHex.filter((h) => h.length > 0), fc.constantFrom(...NOT_HEX), fc.nat()).map(([h, c, i]) => h.slice(0, i % h.length) + c + h.slice((i % h.length) + 1)),
  fc.constantFrom('', '00'.repeat(MAX_DATA_BYTES), '00'.repeat(MAX_DATA_BYTES + 1)),
);

/** How a `data` value reads: lowercase hex, hex with capitals (which the protocol does not promise to take), or not acceptable. */
export function hexState(v: unknown): 'ok' | 'case' | 'bad' {
  if (typeof v !== 'string' || v.length > MAX_DATA_BYTES * 2 || !/^(?:[0-9a-fA-F]{2})*$/.test(v)) return 'bad';
  return /[A-F]/.test(v) ? 'case' : 'ok';
}

// --- expected outcomes ---
export type Expectation = { ok: boolean; codes: string[] };
const fail = (...codes: string[]): Expectation => ({ ok: false, codes });
const succeed: Expectation = { ok: true, codes: [] };
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const validKeyId = (v: unknown): v is string => typeof v === 'string' && KEY_ID.test(v);

/** keygen by PROTOCOL.md; `keys` maps each stored keyId to its algorithm. */
export function expectKeygen(input: unknown, keys: ReadonlyMap<string, string>): Expectation {
  if (!isObject(input) || !validKeyId(input.keyId)) return fail('INVALID_INPUT');
  const algorithm = input.algorithm;
  if (typeof algorithm !== 'string') return fail('INVALID_INPUT');
  if (!ALGORITHMS.includes(algorithm)) return fail('UNSUPPORTED_ALGORITHM');
  const stored = keys.get(input.keyId);
  return stored !== undefined && stored !== algorithm ? fail('KEY_EXISTS') : succeed;
}

/** sign by PROTOCOL.md's table. Which of two faults is reported first is not specified, so either may be. */
export function expectSign(input: unknown, keys: ReadonlyMap<string, string>): Expectation {
  if (!isObject(input)) return fail('INVALID_INPUT');
  const { keyId, data, encoding, hash, padding } = input;
  const hex = hexState(data);
  const generic = validKeyId(keyId) && hex !== 'bad' && (encoding === 'digest' || encoding === 'message') && (hash === undefined || HASHES.includes(hash as string)) && (padding === undefined || padding === 'pss' || padding === 'pkcs1');
  const algorithm = validKeyId(keyId) ? keys.get(keyId) : undefined;
  if (!generic) return validKeyId(keyId) && algorithm === undefined ? fail('INVALID_INPUT', 'KEY_NOT_FOUND') : fail('INVALID_INPUT');
  // Capitals in hex: taken as the same bytes, or refused as not the protocol's lowercase.
  const lenient = (e: Expectation): Expectation => (hex === 'case' ? { ok: e.ok, codes: [...e.codes, 'INVALID_INPUT'] } : e);
  if (algorithm === undefined) return lenient(fail('KEY_NOT_FOUND'));
  const size = (data as string).length / 2;
  if (algorithm.startsWith('ecdsa-')) {
    if (padding !== undefined) return fail('INVALID_INPUT');
    if (encoding === 'digest') return lenient(hash === undefined && size === (algorithm === 'ecdsa-p384' ? 48 : 32) ? succeed : fail('INVALID_INPUT'));
    return lenient(hash !== undefined ? succeed : fail('INVALID_INPUT'));
  }
  if (algorithm === 'eddsa-ed25519') return lenient(padding === undefined && encoding === 'message' && hash === undefined ? succeed : fail('INVALID_INPUT'));
  return lenient(encoding === 'message' && RSA_HASHES.includes(hash as string) ? succeed : fail('INVALID_INPUT'));
}
