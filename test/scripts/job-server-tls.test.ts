// The job server's mutual TLS, with certificates from scripts/pki.sh: only client chains that end
// in the API root get an HTTP answer, and a client that trusts another CA refuses the server.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer } from '../../scripts/job-server.js';
import type { JobServer } from '../../scripts/job-server.js';
import { call, callError, makePki } from './helpers.js';
import type { Identity } from './helpers.js';

const pki = makePki('driver');
let server: JobServer;
beforeAll(async () => {
  server = await startJobServer({ cert: pki.read('server.pem'), key: pki.read('server.key'), ca: pki.read('api-ca.pem') });
});
afterAll(async () => {
  await server.close();
  pki.remove();
});

const ca = () => pki.read('api-ca.pem');
const driver = (): Identity => ({ cert: pki.read('driver-chain.pem'), key: pki.read('driver.key'), ca: ca() });

/** A refused handshake: the client gets no HTTP answer, the server counts it and records no poll. */
async function expectRefused(who: Identity): Promise<NodeJS.ErrnoException> {
  const before = { refused: server.stats().tlsRefused, polls: server.stats().polls };
  const err = await callError(server.url, who, 'GET', '/v1/jobs/next?wait=0');
  await new Promise((r) => setTimeout(r, 50)); // the server's alert and its event race the client's error
  expect(server.stats().tlsRefused).toBe(before.refused + 1);
  expect(server.stats().polls).toBe(before.polls);
  return err;
}

describe('job server mutual TLS', () => {
  test('a driver presenting leaf + intermediate is let in, and its CN is recorded', async () => {
    const id = server.enqueue('health', {});
    const reply = await call(server.url, driver(), 'GET', '/v1/jobs/next?wait=0');
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({ id, kind: 'health', attempt: 1, input: {} });
    expect(server.job(id)?.leasedBy).toBe('driver');
    expect(server.job(id)?.leases[0]).toMatchObject({ by: 'driver', userAgent: 'hsm-driver/0.0.0-test', attempt: 1 });
  });

  test('TLS 1.2 is accepted as well as 1.3', async () => {
    expect((await call(server.url, { ...driver(), maxVersion: 'TLSv1.2' }, 'GET', '/v1/jobs/next?wait=0')).status).toBe(204);
  });

  test('the same leaf without its intermediate is refused at the TLS layer', async () => {
    await expectRefused({ cert: pki.read('driver.pem'), key: pki.read('driver.key'), ca: ca() });
  });

  test('the same leaf without its intermediate is refused over TLS 1.2 too', async () => {
    await expectRefused({ cert: pki.read('driver.pem'), key: pki.read('driver.key'), ca: ca(), maxVersion: 'TLSv1.2' });
  });

  test('the rogue certificate (its own CA) is refused at the TLS layer', async () => {
    await expectRefused({ cert: pki.read('rogue.pem'), key: pki.read('rogue.key'), ca: ca() });
  });

  test('a client without a certificate is refused at the TLS layer', async () => {
    await expectRefused({ ca: ca() });
  });

  test('a client that trusts another CA refuses the server certificate', async () => {
    const polls = server.stats().polls;
    const err = await callError(server.url, { ...driver(), ca: pki.read('rogue-ca.pem') }, 'GET', '/v1/jobs/next?wait=0');
    // The server sends its chain up to the root it holds as `ca`, so the client sees that root.
    expect(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']).toContain(err.code);
    expect(server.stats().polls).toBe(polls);
  });

  test('the server certificate names localhost as well as 127.0.0.1', async () => {
    const url = server.url.replace('127.0.0.1', 'localhost');
    expect((await call(url, driver(), 'GET', '/v1/jobs/next?wait=0')).status).toBe(204);
  });
});
