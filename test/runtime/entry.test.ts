// The bundle's first words: an older Node gets one line naming the Node needed and the
// alternatives; a mistyped command gets one line listing the commands.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const bundle = () => process.env.HSM_DRIVER_BUNDLE!;
/** The machine's own node, when it is older than the Node 24 the repo pins (Debian 12's is 18, this kind's 20). */
const systemNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p) && Number(spawnSync(p, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).stdout) < 24);

describe('entry', () => {
  it.skipIf(!systemNode)(`on an older Node (${systemNode ?? 'none here'}) it says which Node it needs, in one line, exit 2`, () => {
    const res = spawnSync(systemNode!, [bundle(), 'hsm', 'list'], { encoding: 'utf8' });
    expect(res.status).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^hsm-driver: needs Node 24 \(node:sqlite\), this is Node \d+\.\d+\.\d+; use the single binary .* or the pinned Node: node_modules\/\.bin\/node dist\/hsm-driver\.cjs …\n$/);
  });

  it('an unknown command is one line listing the commands, exit 2', () => {
    const res = spawnSync(process.execPath, [bundle(), 'frobnicate', '--x'], { encoding: 'utf8' });
    expect(res).toMatchObject({ status: 2, stdout: '' });
    expect(res.stderr).toBe('hsm-driver: unknown command "frobnicate"; commands: run, keygen, sign, health, hsm, keys, audit, service, config, version (see --help)\n');
  });

  it('a reader that closes stdout early is not an error', () => {
    const res = spawnSync('sh', ['-c', `"${process.execPath}" "${bundle()}" --help | head -c 10 >/dev/null; echo "$?"`], { encoding: 'utf8' });
    expect(res.stdout.trim()).toBe('0');
    expect(res.stderr).not.toMatch(/EPIPE/);
  });
});
