// Certificates that must be refused, on both ends of the mutual TLS. The reference job server
// refuses client chains that are expired, not yet valid, from another CA, or that abuse a CA
// they reach (a leaf that signs, a sub-CA past pathlen:0, the server's own serverAuth
// certificate). A running driver refuses a job API whose certificate names another host, does
// not chain to --ca-cert (whatever NODE_EXTRA_CA_CERTS says), is expired, not yet valid, not
// for serverAuth, or comes from the customer intermediate; it stops at the handshake (no poll
// reaches the server, the job stays queued) and logs why. Each refusal has a twin that is
// accepted, made the same way, so what is refused is refused for the reason named.
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../scripts/job-server.js';
import { call, callError, type Identity } from '../scripts/helpers.js';
import { daysFromNow, issue } from '../support/certs.js';
import { TARGETS, spawnDriver, stateIs, useRunFixture, type LogLine } from '../support/driver.js';

const fx = useRunFixture('certificates', ['driver']);
const LOCAL = 'DNS:localhost,IP:127.0.0.1';
const read = (name: string) => fx.pki.read(name);

beforeAll(() => {
  const dir = fx.pki.dir;
  const chain = ['customer-ca.pem'];
  // Clients, under the customer intermediate unless said otherwise.
  issue({ dir, name: 'fresh', issuer: 'customer-ca', profile: 'client', chain });
  issue({ dir, name: 'expired', issuer: 'customer-ca', profile: 'client', chain, notBefore: daysFromNow(-30), notAfter: daysFromNow(-1) });
  issue({ dir, name: 'future', issuer: 'customer-ca', profile: 'client', chain, notBefore: daysFromNow(1), notAfter: daysFromNow(30) });
  issue({ dir, name: 'old-ca', issuer: 'api-ca', profile: 'ca', notBefore: daysFromNow(-30), notAfter: daysFromNow(-1) });
  issue({ dir, name: 'under-old-ca', issuer: 'old-ca', profile: 'client', chain: ['old-ca.pem'] });
  issue({ dir, name: 'new-ca', issuer: 'api-ca', profile: 'ca' });
  issue({ dir, name: 'under-new-ca', issuer: 'new-ca', profile: 'client', chain: ['new-ca.pem'] });
  issue({ dir, name: 'by-leaf', issuer: 'driver', profile: 'client', chain: ['driver.pem', 'customer-ca.pem'] });
  issue({ dir, name: 'sub-ca', issuer: 'customer-ca', profile: 'ca', chain });
  issue({ dir, name: 'under-sub-ca', issuer: 'sub-ca', profile: 'client', chain: ['sub-ca.pem', 'customer-ca.pem'] });
  // A CA of the attacker's with the customer intermediate's very name.
  issue({ dir, name: 'lookalike-ca', issuer: 'self', profile: 'ca', cn: 'customer intermediate CA' });
  issue({ dir, name: 'under-lookalike', issuer: 'lookalike-ca', profile: 'client', chain: ['lookalike-ca.pem'] });
  // Servers.
  issue({ dir, name: 'srv-ok', issuer: 'api-ca', profile: 'server', san: LOCAL });
  issue({ dir, name: 'srv-other-host', issuer: 'api-ca', profile: 'server', san: 'DNS:api.example.com,IP:10.9.8.7' });
  issue({ dir, name: 'srv-cn-only', issuer: 'api-ca', profile: 'server', san: 'DNS:api.example.com', cn: '127.0.0.1' });
  issue({ dir, name: 'srv-rogue', issuer: 'rogue-ca', profile: 'server', san: LOCAL });
  issue({ dir, name: 'srv-self', issuer: 'self', profile: 'server', san: LOCAL });
  issue({ dir, name: 'srv-expired', issuer: 'api-ca', profile: 'server', san: LOCAL, notBefore: daysFromNow(-30), notAfter: daysFromNow(-1) });
  issue({ dir, name: 'srv-future', issuer: 'api-ca', profile: 'server', san: LOCAL, notBefore: daysFromNow(1), notAfter: daysFromNow(30) });
  issue({ dir, name: 'srv-client-only', issuer: 'api-ca', profile: 'client', san: LOCAL });
  issue({ dir, name: 'srv-by-customer', issuer: 'customer-ca', profile: 'server', san: LOCAL, chain });
});

describe('the reference job server refuses client certificates', () => {
  const who = (chain: string, key: string): Identity => ({ cert: read(chain), key: read(key), ca: read('api-ca.pem') });

  /** A refused handshake: no HTTP answer, one more refusal counted, no poll recorded. */
  async function refused(id: Identity): Promise<void> {
    const before = fx.server.stats();
    await callError(fx.server.url, id, 'GET', '/v1/jobs/next?wait=0');
    await new Promise((r) => setTimeout(r, 50)); // the server's refusal event and the client's error race
    expect(fx.server.stats().tlsRefused).toBe(before.tlsRefused + 1);
    expect(fx.server.stats().polls).toBe(before.polls);
  }
  const accepted = async (id: Identity) => expect((await call(fx.server.url, id, 'GET', '/v1/jobs/next?wait=0')).status).toBe(204);

  test('the twins are let in: a fresh leaf under the intermediate, a leaf under a valid CA made the same way', async () => {
    await accepted(who('fresh-chain.pem', 'fresh.key'));
    await accepted(who('under-new-ca-chain.pem', 'under-new-ca.key'));
  });

  test.each([
    ['expired', 'expired-chain.pem', 'expired.key'],
    ['not yet valid', 'future-chain.pem', 'future.key'],
    ['under an expired intermediate', 'under-old-ca-chain.pem', 'under-old-ca.key'],
    ['from the rogue CA, sent with that CA', 'rogue.pem', 'rogue.key'],
    ['from a CA named like the customer intermediate', 'under-lookalike-chain.pem', 'under-lookalike.key'],
    ['signed by a driver leaf (CA:FALSE)', 'by-leaf-chain.pem', 'by-leaf.key'],
    ['under a sub-CA of the intermediate (pathlen:0)', 'under-sub-ca-chain.pem', 'under-sub-ca.key'],
    ["the server's own certificate (serverAuth only)", 'server.pem', 'server.key'],
  ])('%s', async (_name, chain, key) => {
    const id = who(chain, key);
    if (chain === 'rogue.pem') id.cert = Buffer.concat([read('rogue.pem'), read('rogue-ca.pem')]);
    await refused(id);
    await refused({ ...id, maxVersion: 'TLSv1.2' });
  });
});

describe('the customer intermediate (scripts/pki.sh) may only vouch for clients', () => {
  test('its extended key usage is clientAuth, so a server certificate under it does not verify', () => {
    expect(new X509Certificate(read('customer-ca.pem')).keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
  });
});

describe.each(TARGETS)('hsm-driver run as the %s refuses a job API', (target) => {
  const servers: JobServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  async function serverWith(name: string): Promise<JobServer> {
    const server = await startJobServer({ cert: read(`${name}-chain.pem`), key: read(`${name}.key`), ca: read('api-ca.pem') });
    servers.push(server);
    return server;
  }

  test('the twin: a server certificate from the API root for 127.0.0.1 is polled and answered', async () => {
    const server = await serverWith('srv-ok');
    fx.driver = spawnDriver({ target, pki: fx.pki, proxyAddr: server.proxyAddr, sqlitePath: fx.freshDb() });
    const job = await server.waitForCompletion(server.enqueue('health', {}), 30_000);
    expect(job.result).toMatchObject({ hsm: { ok: true } });
  });

  test.each([
    ['for another host name', 'srv-other-host', {}, /ERR_TLS_CERT_ALTNAME_INVALID/],
    ['whose CN is 127.0.0.1 but whose names are another host', 'srv-cn-only', {}, /ERR_TLS_CERT_ALTNAME_INVALID/],
    ['signed by another CA', 'srv-rogue', {}, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/],
    ['signed by another CA that NODE_EXTRA_CA_CERTS names', 'srv-rogue', { NODE_EXTRA_CA_CERTS: 'rogue-ca.pem' }, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/],
    ['self-signed', 'srv-self', {}, /DEPTH_ZERO_SELF_SIGNED_CERT/],
    ['expired', 'srv-expired', {}, /CERT_HAS_EXPIRED/],
    ['not yet valid', 'srv-future', {}, /CERT_NOT_YET_VALID/],
    ['made for clientAuth only', 'srv-client-only', {}, /INVALID_PURPOSE/],
    ['issued by the customer intermediate', 'srv-by-customer', {}, /INVALID_PURPOSE/],
  ])('%s: no poll, the job stays queued, and the log says why', { timeout: 60_000 }, async (_name, cert, env: Record<string, string>, why) => {
    const server = await serverWith(cert);
    const id = server.enqueue('health', {});
    const extra = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, fx.pki.file(v)]));
    const d = (fx.driver = spawnDriver({ target, pki: fx.pki, proxyAddr: server.proxyAddr, sqlitePath: fx.freshDb(), env: extra }));
    let failures = 0;
    const failed = (l: LogLine) => l.msg === 'poll failed, backing off' && ++failures === 3;
    // Whichever comes first: the third refused poll, or the job answered (the certificate was accepted).
    const outcome = await Promise.race([
      d.waitForLog(failed, 30_000).then((l) => ({ refused: l }), () => ({ timeout: true })),
      server.waitForCompletion(id, 30_000).then(() => ({ accepted: true }), () => ({ timeout: true })),
    ]);
    expect(outcome, 'the driver polled this server and answered its job').not.toHaveProperty('accepted');
    expect(outcome).toHaveProperty('refused');
    const last = (outcome as { refused: LogLine }).refused;
    expect(d.logs.filter((l) => l.msg === 'poll failed, backing off').every((l) => why.test(String(l.err)))).toBe(true);
    expect(String(last.err)).toMatch(why);
    expect(server.stats().polls).toBe(0);
    expect(server.job(id)).toMatchObject({ state: 'queued', leases: [] });
    expect(d.logs.some(stateIs('running'))).toBe(true); // it did try: refused at the handshake, not before
  });

  test.each([
    ['an expired client certificate', 'expired-chain.pem', 'expired.key', /client certificate .*expired on/],
    ['a client certificate not valid yet', 'future-chain.pem', 'future.key', /client certificate .*is not valid before/],
  ])('%s of its own: it does not start, and says why in one line', async (_name, cert, key, why) => {
    const polls = fx.server.stats().polls;
    const d = (fx.driver = spawnDriver({ target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), clientCert: cert, clientKey: key }));
    expect(await d.exited).not.toBe(0);
    expect(d.stderr()).toMatch(why);
    expect(fx.server.stats().polls).toBe(polls);
  });
});
