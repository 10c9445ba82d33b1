// `hsm-driver config check` and `config init`: the effective configuration with each value's
// source (secrets redacted), and the checks an operator wants before a restart: PIN file and
// client key modes, certificate chain and dates, the module loads and the token is found.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { OPTIONS, readPin, resolveModule, settingsWithSources, type OptionName } from '../config.js';
import { ConfigError } from '../errors.js';
import { parseCertificates, loadClientTls } from '../driver/tls.js';
import { Pkcs11Library } from '../hsm/module.js';

/** Certificates expiring within this many days are warned about. */
const EXPIRY_WARNING_DAYS = 30;

export interface CheckReport {
  lines: string[];
  ok: boolean;
}

/** A PostgreSQL URL with its password replaced. */
function redact(name: OptionName, value: string): string {
  return name === 'postgres-url' ? value.replace(/(\/\/[^/:@]*:)[^/@]*@/, '$1****@') : value;
}

export function configCheck(argv: Record<string, unknown>, env: NodeJS.ProcessEnv, now = new Date()): CheckReport {
  const lines: string[] = [];
  const problems: string[] = [];
  const warnings: string[] = [];
  const attempt = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err.message);
    }
  };

  const { settings, sources } = settingsWithSources(argv, env);
  lines.push('effective configuration (flag > env > file):');
  for (const name of Object.keys(OPTIONS) as OptionName[]) {
    const value = settings[name];
    if (value !== undefined) lines.push(`  ${name} = ${redact(name, value)} (${sources[name]})`);
  }
  lines.push(`  PIN: ${env.USER_PIN ? 'from USER_PIN (env; not shown)' : settings['pin-file'] ? `from the file ${settings['pin-file']} (not shown)` : 'not set'}`);

  attempt(() => void readPin(settings, { ...env }));
  const key = settings['client-key'];
  if (key && process.platform !== 'win32' && existsSync(key) && (statSync(key).mode & 0o077) !== 0) {
    problems.push(`client key ${key} is open to group or others (mode ${(statSync(key).mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`);
  }
  if (settings['client-cert'] || settings['client-key'] || settings['ca-cert']) {
    attempt(() => {
      loadClientTls({ clientCert: settings['client-cert'], clientKey: settings['client-key'], caCert: settings['ca-cert'] }, now);
      const chain = parseCertificates(readFileSync(settings['client-cert']!, 'utf8'), 'client certificate', settings['client-cert']!);
      const cas = parseCertificates(readFileSync(settings['ca-cert']!, 'utf8'), 'CA certificate', settings['ca-cert']!);
      chain.forEach((cert, i) => {
        const issuer = chain[i + 1];
        if (issuer && !(cert.checkIssued(issuer) && cert.verify(issuer.publicKey))) {
          problems.push(`client certificate ${settings['client-cert']}: certificate ${i + 1} is not signed by certificate ${i + 2} of the file`);
        }
      });
      for (const [what, certs] of [['client certificate', chain], ['CA certificate', cas]] as Array<[string, X509Certificate[]]>) {
        for (const cert of certs) {
          const days = Math.floor((new Date(cert.validTo).getTime() - now.getTime()) / 86_400_000);
          if (days < EXPIRY_WARNING_DAYS) warnings.push(`${what} ${cert.subject.replace(/\n/g, ', ')} expires in ${days} days (${new Date(cert.validTo).toISOString().slice(0, 10)})`);
        }
      }
    });
  }
  attempt(() => {
    const library = new Pkcs11Library(resolveModule(settings, env));
    try {
      library.initialize();
      const token = library.findToken({ label: settings['token-label'], serial: settings['token-serial'], slot: settings.slot === undefined ? undefined : Number(settings.slot) });
      lines.push(`  token: "${token.label}" serial ${token.serial} in ${library.path}`);
    } catch (err) {
      throw err instanceof ConfigError ? err : new ConfigError(`PKCS#11 module ${library.path}: ${(err as Error).message.split('\n')[0]}`);
    } finally {
      library.close();
    }
  });

  for (const w of warnings) lines.push(`warning: ${w}`);
  for (const p of problems) lines.push(`problem: ${p}`);
  lines.push(problems.length === 0 ? 'config check: ok' : `config check: ${problems.length} problem(s)`);
  return { lines, ok: problems.length === 0 };
}

/** A commented example config file: every option, commented out, with its description. */
export function exampleConfig(): string {
  const out = ['# hsm-driver configuration (YAML; JSON works too). Keys are the flags\' names;', '# a flag or its environment variable wins over this file. The PIN never goes here.', ''];
  let group = '';
  for (const [name, spec] of Object.entries(OPTIONS)) {
    if (spec.group !== group) {
      group = spec.group;
      out.push(`# --- ${group}`);
    }
    out.push(`# ${spec.describe} (env ${spec.env})`, `# ${name}: `);
  }
  return `${out.join('\n')}\n`;
}

export function configInit(path: string): string {
  if (existsSync(path)) throw new ConfigError(`${path} exists; not overwriting it`);
  writeFileSync(path, exampleConfig(), { mode: 0o644, flag: 'wx' });
  return `wrote ${path}`;
}
