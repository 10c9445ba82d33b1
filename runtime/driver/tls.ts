// Loads and checks the driver's mTLS material at start: the leaf (and its chain), its key, and
// the CA bundle that the job API's certificate must chain to. Every problem is one clear line.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';

export interface ClientTls {
  /** PEM: the leaf, optionally followed by its intermediate(s). */
  cert: string;
  key: string;
  ca: string;
  leaf: X509Certificate;
}

function readPem(path: string | undefined, what: string, flag: string): string {
  if (!path) throw new ConfigError(`${what} is missing: set ${flag}`);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${what} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Splits a PEM bundle into its certificates; throws if there are none or one does not parse. */
export function parseCertificates(pem: string, what: string, path: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${what} ${path} holds no PEM certificate`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch {
      throw new ConfigError(`${what} ${path} holds a certificate that does not parse`);
    }
  });
}

function checkValidity(cert: X509Certificate, what: string, path: string, now: Date): void {
  if (new Date(cert.validTo) < now) throw new ConfigError(`${what} ${path} expired on ${new Date(cert.validTo).toISOString()}`);
  if (new Date(cert.validFrom) > now) throw new ConfigError(`${what} ${path} is not valid before ${new Date(cert.validFrom).toISOString()}`);
}

export function loadClientTls(paths: { clientCert?: string; clientKey?: string; caCert?: string }, now = new Date()): ClientTls {
  const cert = readPem(paths.clientCert, 'client certificate', '--client-cert');
  const key = readPem(paths.clientKey, 'client key', '--client-key');
  const ca = readPem(paths.caCert, 'CA certificate', '--ca-cert');
  const [leaf, ...chain] = parseCertificates(cert, 'client certificate', paths.clientCert!);
  checkValidity(leaf!, 'client certificate', paths.clientCert!, now);
  for (const c of chain) checkValidity(c, 'intermediate in', paths.clientCert!, now);
  for (const c of parseCertificates(ca, 'CA certificate', paths.caCert!)) checkValidity(c, 'CA certificate', paths.caCert!, now);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new ConfigError(`client key ${paths.clientKey} is not a readable unencrypted PEM private key`);
  }
  if (!leaf!.checkPrivateKey(privateKey)) {
    throw new ConfigError(`client key ${paths.clientKey} does not match the certificate ${paths.clientCert} (${leaf!.subject.replace(/\n/g, ', ')})`);
  }
  return { cert, key, ca, leaf: leaf! };
}
