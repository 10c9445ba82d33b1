// What `service install` puts on the Windows service's command line, checked on any platform;
// the real registration runs under Wine (windows-service.test.ts).
import { describe, expect, it } from 'vitest';
import { quoteWindowsArg, serviceArgs, servicePaths } from '../../../runtime/service/windows.js';

/** CommandLineToArgvW's rules (MSVCRT) for one argument: what quoteWindowsArg must survive. */
function parseWindowsArg(arg: string): string {
  let out = '';
  for (let i = 0; i < arg.length; ) {
    let slashes = 0;
    while (arg[i] === '\\') slashes++, i++;
    if (arg[i] === '"') {
      // 2n backslashes + quote: n backslashes and a quote that opens or closes; 2n+1: a literal quote.
      out += '\\'.repeat(Math.floor(slashes / 2)) + (slashes % 2 === 1 ? '"' : '');
      i++;
    } else {
      out += '\\'.repeat(slashes) + (arg[i] ?? '');
      i++;
    }
  }
  return out;
}

describe('quoteWindowsArg', () => {
  it.each(['plain', 'C:\\Program Files\\hsm driver\\hsm-driver.exe', 'ends with a slash\\', 'say "hi"', 'a\\"b', '', 'tab\there'])('%j survives', (arg) => {
    const quoted = quoteWindowsArg(arg);
    expect(parseWindowsArg(quoted)).toBe(arg);
    if (/[\s"]/.test(arg) || arg === '') expect(quoted).toMatch(/^".*"$/);
    else expect(quoted).toBe(arg);
  });
});

describe('serviceArgs', () => {
  const paths = servicePaths('C:\\ProgramData', 'signer');
  it('hands the run options on, with the install-made PIN and log files and a SQLite file in its state dir', () => {
    expect(serviceArgs({ 'proxy-addr': 'api:8443', 'pin-file': 'C:\\elsewhere\\pin', sessions: '2' }, paths)).toEqual([
      '--sessions', '2', '--proxy-addr', 'api:8443',
      '--sqlite-path', 'C:\\ProgramData\\hsm-driver\\signer\\keys.db',
      '--pin-file', 'C:\\ProgramData\\hsm-driver\\signer\\user.pin',
      '--log-file', 'C:\\ProgramData\\hsm-driver\\logs\\signer.log',
    ]);
  });
  it('uses PostgreSQL instead when it is set', () => {
    expect(serviceArgs({ 'postgres-url': 'postgres://db/hsm' }, paths)).not.toContain('--sqlite-path');
  });
});
