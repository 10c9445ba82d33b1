// The opt-in local listener (--metrics-addr): /metrics for Prometheus, /livez (the process
// answers) and /readyz (200 only while HSM, master key and database are usable and the driver
// is polling; 503 with the reason otherwise, and never before the first successful check).
// Plain HTTP on its own address, never the job API's connection.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../errors.js';
import type { DriverMetrics } from './metrics.js';

export interface ProbeSources {
  metrics: DriverMetrics;
  /** undefined when ready; else why not, in one line. */
  notReady: () => string | undefined;
}

/** Parses `host:port` (IPv6 in brackets); the host defaults to loopback when only `:port` is given. */
export function parseListenAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new ConfigError(`--metrics-addr must be host:port (e.g. 127.0.0.1:9464), got "${addr}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export async function startProbes(addr: string, sources: ProbeSources): Promise<{ server: Server; address: string; close: () => Promise<void> }> {
  const { host, port } = parseListenAddr(addr);
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      sources.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': sources.metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end('metrics unavailable\n'),
      );
    } else if (path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const reason = sources.notReady();
      res.writeHead(reason ? 503 : 200, { 'content-type': 'text/plain' }).end(reason ? `not ready: ${reason}\n` : 'ready\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics, /livez, /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ConfigError(`cannot listen on --metrics-addr ${addr}: ${(err as Error).message}`)));
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const address = `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  return { server, address, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
