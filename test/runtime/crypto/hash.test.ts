// Message hashes against published test vectors, so a wrong Keccak variant cannot pass.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HASH_BYTES, hashMessage } from '../../../runtime/crypto/hash.js';
import { HASHES } from '../../../runtime/crypto/algorithms.js';

const hex = (b: Buffer) => b.toString('hex');

describe('hashMessage', () => {
  it('keccak256 is Ethereum\'s Keccak, not SHA3-256', () => {
    // Known vectors (keccak256 of "" is Ethereum's empty-code hash).
    expect(hex(hashMessage('keccak256', Buffer.alloc(0)))).toBe(
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    );
    expect(hex(hashMessage('keccak256', Buffer.from('abc')))).toBe(
      '4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45',
    );
    expect(hex(hashMessage('keccak256', Buffer.alloc(0)))).not.toBe(
      hex(createHash('sha3-256').update(Buffer.alloc(0)).digest()),
    );
  });

  it('SHA-2 matches the FIPS 180 "abc" vectors', () => {
    const abc = Buffer.from('abc');
    expect(hex(hashMessage('sha256', abc))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    expect(hex(hashMessage('sha384', abc))).toBe(
      'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
    );
    expect(hex(hashMessage('sha512', abc))).toBe(
      'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    );
  });

  it('output lengths match HASH_BYTES', () => {
    for (const h of HASHES) expect(hashMessage(h, Buffer.from('x')).length).toBe(HASH_BYTES[h]);
  });
});
