// Certificates scripts/pki.sh does not make, for the security tests: any validity window
// (expired, not yet valid), any issuer in a PKI dir (the API root, the customer intermediate,
// the rogue CA, even a leaf), any subject alternative names and purpose. Made with `openssl ca`,
// the one openssl 3.0 command that takes explicit start and end dates.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Profile = 'client' | 'server' | 'ca';

export interface IssueOptions {
  /** Files NAME.key, NAME.pem (and NAME-chain.pem for leaves) are written to `dir`. */
  dir: string;
  name: string;
  /** NAME of the issuer in `dir` (its .pem and .key); the certificate itself when 'self'. */
  issuer: string | 'self';
  profile: Profile;
  /** e.g. 'DNS:localhost,IP:127.0.0.1'; none when undefined. */
  san?: string;
  cn?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Certificates appended after the leaf in NAME-chain.pem (file names in `dir`). */
  chain?: string[];
}

const EXTENSIONS: Record<Profile, string> = {
  client: 'basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\n',
  server: 'basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\n',
  ca: 'basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n',
};

const DAY = 86_400_000;

/** openssl ca's date form, YYYYMMDDHHMMSSZ. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** Makes NAME.key (EC P-256) and NAME.pem signed by `issuer` in `dir`; returns the PEM. */
export function issue(o: IssueOptions): string {
  const work = mkdtempSync(join(tmpdir(), 'certs-'));
  const f = (name: string) => join(o.dir, name);
  try {
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${o.name}.key`)], { stdio: 'pipe' });
    writeFileSync(join(work, 'index.txt'), '');
    const ext = `${EXTENSIONS[o.profile]}${o.san ? `subjectAltName = ${o.san}\n` : ''}${o.issuer === 'self' ? '' : 'authorityKeyIdentifier = keyid:always\n'}`;
    writeFileSync(
      join(work, 'ca.cnf'),
      `[ca]\ndefault_ca = this\n[this]\ndatabase = ${join(work, 'index.txt')}\nnew_certs_dir = ${work}\nrand_serial = yes\n` +
        `default_md = sha256\npolicy = any\nunique_subject = no\nemail_in_dn = no\ncopy_extensions = none\n[any]\ncommonName = supplied\norganizationName = optional\n` +
        `[req]\ndistinguished_name = dn\n[dn]\n[ext]\n${ext}`,
    );
    const subject = `/O=hsm-driver security test/CN=${o.cn ?? o.name}`;
    execFileSync('openssl', ['req', '-new', '-key', f(`${o.name}.key`), '-subj', subject, '-config', join(work, 'ca.cnf'), '-out', join(work, 'csr.pem')], { stdio: 'pipe' });
    const now = Date.now();
    const issuerArgs = o.issuer === 'self' ? ['-selfsign', '-keyfile', f(`${o.name}.key`)] : ['-cert', f(`${o.issuer}.pem`), '-keyfile', f(`${o.issuer}.key`)];
    execFileSync(
      'openssl',
      ['ca', '-batch', '-notext', '-config', join(work, 'ca.cnf'), '-extfile', join(work, 'ca.cnf'), '-extensions', 'ext', ...issuerArgs,
        '-startdate', asn1Time(o.notBefore ?? new Date(now - DAY)), '-enddate', asn1Time(o.notAfter ?? new Date(now + 30 * DAY)),
        '-in', join(work, 'csr.pem'), '-out', f(`${o.name}.pem`)],
      { stdio: 'pipe' },
    );
    const pem = readFileSync(f(`${o.name}.pem`), 'utf8');
    const chain = [pem.trim(), ...(o.chain ?? []).map((name) => readFileSync(f(name), 'utf8').trim())];
    writeFileSync(f(`${o.name}-chain.pem`), `${chain.join('\n')}\n`);
    return pem;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export const daysFromNow = (days: number): Date => new Date(Date.now() + days * DAY);
