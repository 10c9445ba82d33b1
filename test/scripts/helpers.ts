// Shared by the job-server tests: a PKI made by scripts/pki.sh in a temp dir, and a small
// node:https client that presents a chosen certificate and reports TLS failures as errors.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const root = join(import.meta.dirname, '..', '..');

/** Runs scripts/pki.sh into a fresh temp dir; `remove` deletes it. */
export function makePki(...names: string[]): { dir: string; file: (name: string) => string; read: (name: string) => Buffer; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'hsm-pki-'));
  execFileSync('bash', [join(root, 'scripts/pki.sh'), dir, ...names], { stdio: 'pipe' });
  const file = (name: string) => join(dir, name);
  return { dir, file, read: (name) => readFileSync(file(name)), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export type Pki = ReturnType<typeof makePki>;

/** The server side of the PKI, as startJobServer takes it. */
export function serverTls(pki: Pki): { cert: Buffer; key: Buffer; ca: Buffer } {
  return { cert: pki.read('server.pem'), key: pki.read('server.key'), ca: pki.read('api-ca.pem') };
}

/** A driver as it should connect: leaf + intermediate, its key, and the API root. */
export function identity(pki: Pki, name: string, userAgent?: string): Identity {
  return { cert: pki.read(`${name}-chain.pem`), key: pki.read(`${name}.key`), ca: pki.read('api-ca.pem'), userAgent };
}

export interface Identity {
  /** Client certificate PEM (leaf, or leaf then intermediate), its key, and the CA for the server. */
  cert?: Buffer;
  key?: Buffer;
  ca: Buffer;
  userAgent?: string;
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The parsed body, or undefined when there is none. */
  json: unknown;
}

/**
 * One request on a fresh connection (no agent), so each call does its own TLS handshake.
 * `body` is sent as JSON unless it is a string, which is sent as it is.
 */
export function call(baseUrl: string, who: Identity, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, baseUrl),
      {
        method,
        agent: false,
        ca: who.ca,
        cert: who.cert,
        key: who.key,
        maxVersion: who.maxVersion,
        headers: {
          'user-agent': who.userAgent ?? 'hsm-driver/0.0.0-test',
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: text === '' ? undefined : JSON.parse(text) });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The error a call fails with; fails the test when it gets an HTTP answer instead. */
export async function callError(...args: Parameters<typeof call>): Promise<NodeJS.ErrnoException> {
  try {
    const reply = await call(...args);
    throw new Error(`expected a TLS failure, got HTTP ${reply.status}`);
  } catch (err) {
    if ((err as Error).message.startsWith('expected a TLS failure')) throw err;
    return err as NodeJS.ErrnoException;
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
