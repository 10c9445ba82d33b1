// A job API that misbehaves on purpose, for the driver's HTTP client: real mutual TLS with the
// certificates scripts/pki.sh makes, and a behaviour each test sets for what goes wrong.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Pki } from '../scripts/helpers.js';

export interface SeenRequest {
  method: string;
  path: string;
  /** Date.now() when the request's headers arrived. */
  at: number;
  body: string;
}

/** What the server does with one request; `raw` is the TCP socket under the TLS one. */
export type Behaviour = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest, raw: Socket) => void;

export interface HostileServer {
  proxyAddr: string;
  port: number;
  /** Every request whose headers arrived, oldest first (POST bodies as far as they came). */
  seen: SeenRequest[];
  /** Sets how requests are answered from now on. */
  behave(behaviour: Behaviour): void;
  close(): Promise<void>;
}

export async function startHostileServer(pki: Pki, behaviour: Behaviour = (_req, res) => res.writeHead(204).end()): Promise<HostileServer> {
  let current = behaviour;
  const seen: SeenRequest[] = [];
  const raws = new Map<number, Socket>();
  const server = createServer({
    cert: pki.read('server.pem'),
    key: pki.read('server.key'),
    ca: pki.read('api-ca.pem'),
    requestCert: true,
    rejectUnauthorized: true,
    // A hostile server holds connections as long as it likes.
    requestTimeout: 0,
    headersTimeout: 0,
    keepAliveTimeout: 60_000,
  });
  server.on('connection', (raw: Socket) => {
    raws.set(raw.remotePort!, raw);
    raw.on('close', () => raws.get(raw.remotePort!) === raw && raws.delete(raw.remotePort!));
    raw.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const record: SeenRequest = { method: req.method ?? '', path: req.url ?? '', at: Date.now(), body: '' };
    seen.push(record);
    res.on('error', () => undefined);
    req.on('error', () => undefined);
    req.setEncoding('utf8').on('data', (chunk: string) => (record.body += chunk));
    const raw = raws.get(req.socket.remotePort!)!;
    const run = () => {
      try {
        current(req, res, record, raw);
      } catch {
        req.socket.destroy();
      }
    };
    // GETs are answered at once (a poll has no body); POSTs once their body is in.
    if (req.method === 'POST') req.on('end', run);
    else run();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    proxyAddr: `127.0.0.1:${port}`,
    seen,
    behave: (b) => {
      current = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const raw of raws.values()) raw.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A job envelope as PROTOCOL.md has it, with a lease `leaseMs` from now. */
export function jobBody(fields: Record<string, unknown> = {}, leaseMs = 30_000): string {
  return JSON.stringify({ id: 'j_hostile', kind: 'health', attempt: 1, leaseExpiresAt: new Date(Date.now() + leaseMs).toISOString(), input: {}, ...fields });
}

/** Writes `total` bytes of `fill` in chunks, waiting for the client to take each; resolves with what went out. */
export function stream(res: ServerResponse, total: number, fill = 0x20): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, fill);
  return new Promise((resolve) => {
    let written = 0;
    const done = () => resolve(written);
    res.on('close', done);
    const more = (): void => {
      while (written < total) {
        const ok = res.write(chunk);
        written += chunk.length;
        if (!ok) {
          res.once('drain', more);
          return;
        }
      }
      res.end();
    };
    more();
  });
}
