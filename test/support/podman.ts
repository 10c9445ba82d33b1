// Rootful podman for the container tests, with the settings this sandbox needs passed as flags
// (FINDINGS.md "Containers"; a CONTAINERS_CONF file makes every run wait 20 s on conmon): a
// store of its own per test file, runc (crun refuses the hybrid cgroups here) and ulimits no
// higher than ours (the sandbox cannot raise them). Also a bash that runs README blocks one
// after another, as a reader pastes them into one shell, with `podman` meaning this podman.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Why the container tests cannot run here, or undefined when they can. */
export function podmanMissing(): string | undefined {
  if (process.platform !== 'linux') return 'containers are tested on Linux';
  if (spawnSync('podman', ['--version']).error) return 'podman is not installed (scripts/install-deps.sh installs podman and runc as root)';
  if (spawnSync('runc', ['--version']).error) return 'runc is not installed (scripts/install-deps.sh installs it as root)';
  // The image's files belong to uid 10001: rootless podman would need subordinate ids for it.
  if (process.getuid?.() !== 0) return 'the container tests run rootful podman: run them as root';
  return undefined;
}

/**
 * Open files as we have them (podman's default asks for more than this sandbox may give);
 * processes at 4096, which runc could set here where our own limit (96365) failed with EPERM.
 */
function currentUlimits(): string[] {
  const [soft, hard] = spawnSync('bash', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' }).stdout.trim().split('\n');
  return ['--ulimit', `nofile=${soft}:${hard}`, '--ulimit', 'nproc=4096:4096'];
}

export interface PodmanResult {
  status: number;
  stdout: string;
  stderr: string;
}

export class Podman {
  readonly dir: string;
  readonly global: string[];
  readonly ulimits = currentUlimits();

  constructor(dir: string) {
    this.dir = dir;
    this.global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--runtime', 'runc'];
  }

  /**
   * podman's argv for `args`. A run without a network of its own gets none: the default bridge
   * would leave an interface and firewall rules on the host.
   */
  argv(args: string[]): string[] {
    if (args[0] !== 'run') return [...this.global, ...args];
    const network = args.some((a) => /^--(network|net)(=|$)/.test(a)) ? [] : ['--network=none'];
    return [...this.global, 'run', ...this.ulimits, ...network, ...args.slice(1)];
  }

  run(args: string[], timeoutMs = 60_000): PodmanResult {
    const res = spawnSync('podman', this.argv(args), { encoding: 'utf8', timeout: timeoutMs });
    if (res.status === null) throw new Error(`podman ${args.join(' ')} did not exit (${res.signal ?? res.error?.message})\n${res.stderr}`);
    return { status: res.status, stdout: res.stdout, stderr: res.stderr };
  }

  /** run() without blocking the event loop: an in-process job server must keep answering meanwhile. */
  runAsync(args: string[], timeoutMs = 60_000): Promise<PodmanResult> {
    return new Promise((resolve, reject) => {
      execFile('podman', this.argv(args), { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        if (status === null) reject(new Error(`podman ${args.join(' ')} did not exit (${err?.message})\n${stderr}`));
        else resolve({ status, stdout, stderr });
      });
    });
  }

  /** The same choices as argv(), as a bash function named podman. */
  bashFunction(): string {
    const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    return [
      'podman() {',
      `  if [ "$1" != run ]; then command podman ${this.global.map(q).join(' ')} "$@"; return; fi`,
      '  shift; local net=(--network=none) a',
      '  for a in "$@"; do case $a in --network|--network=*|--net|--net=*) net=() ;; esac; done',
      `  command podman ${this.global.map(q).join(' ')} run ${this.ulimits.map(q).join(' ')} "\${net[@]}" "$@"`,
      '}',
    ].join('\n');
  }

  /** Removes every container, volume and image of this store, and the store itself. */
  reset(): void {
    spawnSync('podman', [...this.global, 'system', 'reset', '--force'], { stdio: 'ignore', timeout: 60_000 });
    // containers/storage keeps its overlay dir mounted on itself; what reset leaves would make
    // the temp dir impossible to remove.
    const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '');
    for (const m of mounts.filter((p) => p.startsWith(`${this.dir}/`)).reverse()) spawnSync('umount', ['--lazy', m], { stdio: 'ignore' });
  }
}

/**
 * One bash process fed one block at a time (each from a file, with stdin from /dev/null so no
 * command can read the next block), under `set -euo pipefail`: a failing command ends the
 * shell and the block's promise rejects with what it printed.
 */
export class BlockShell {
  private readonly proc: ChildProcess;
  private stdout = '';
  private stderr = '';
  private count = 0;
  private exited: number | null | undefined;
  private wake: () => void = () => {};
  private readonly cwd: string;

  constructor(cwd: string, env: Record<string, string>, prelude: string) {
    this.cwd = cwd;
    this.proc = spawn('bash', ['--noprofile', '--norc'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => ((this.stdout += d.toString()), this.wake()));
    this.proc.stderr!.on('data', (d: Buffer) => ((this.stderr += d.toString()), this.wake()));
    this.proc.on('exit', (code) => ((this.exited = code), this.wake()));
    this.proc.stdin!.write(`set -euo pipefail\n${prelude}\n`);
  }

  /** Runs `script` in the shell; resolves to what it printed once it is done. */
  async exec(script: string, timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
    const n = ++this.count;
    const file = join(this.cwd, `.block-${n}.sh`);
    writeFileSync(file, script);
    const marker = `--- block ${n} done ---\n`;
    this.stdout = '';
    this.stderr = '';
    this.proc.stdin!.write(`. ${file} </dev/null\nprintf '%s\\n' '${marker.trim()}'\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.stdout.indexOf(marker);
      if (at >= 0) return { stdout: this.stdout.slice(0, at), stderr: this.stderr };
      if (this.exited !== undefined) throw new Error(`the shell exited (${this.exited}) in:\n${script}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms in:\n${script}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        this.wake = () => (clearTimeout(timer), resolve());
      });
    }
  }

  close(): void {
    if (this.exited === undefined) this.proc.stdin!.end('exit 0\n');
  }
}
