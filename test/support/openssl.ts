// Verifies signatures with the openssl command line: a library other than the driver's own
// code path (and other than node's bindings) has the last word in tests.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function withFiles<T>(files: Record<string, Buffer>, run: (path: (name: string) => string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'openssl-'));
  try {
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
    return run((name) => join(dir, name));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function succeeds(args: string[]): boolean {
  try {
    execFileSync('openssl', args, { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** ECDSA over a ready digest (DER signature), or pure Ed25519 over the message itself. */
export function opensslVerifyRaw(spkiDer: Buffer, data: Buffer, signature: Buffer, ed25519 = false): boolean {
  return withFiles({ 'pub.der': spkiDer, data, sig: signature }, (p) =>
    succeeds(['pkeyutl', '-verify', '-pubin', '-keyform', 'DER', '-inkey', p('pub.der'), ...(ed25519 ? ['-rawin'] : []), '-in', p('data'), '-sigfile', p('sig')]),
  );
}

/** RSA over the message, with PSS (salt = hash length) or PKCS#1 v1.5. */
export function opensslVerifyRsa(spkiDer: Buffer, message: Buffer, signature: Buffer, hash: string, padding: 'pss' | 'pkcs1'): boolean {
  const pss = padding === 'pss' ? ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:digest'] : [];
  return withFiles({ 'pub.der': spkiDer, msg: message, sig: signature }, (p) =>
    succeeds(['dgst', `-${hash}`, ...pss, '-keyform', 'DER', '-verify', p('pub.der'), '-signature', p('sig'), p('msg')]),
  );
}
