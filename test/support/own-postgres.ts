// A PostgreSQL server of a test's own (initdb in a temp dir, its own port and socket), so a test
// can stop, crash and restart it without touching the machine's shared cluster on 5432.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The newest installed server binaries (Debian's /usr/lib/postgresql/N/bin). */
function binDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'pg_ctl'))) : [];
  const newest = versions.sort((a, b) => Number(a) - Number(b)).at(-1);
  if (newest === undefined) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql');
  return join(base, newest, 'bin');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export class OwnPostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
  ) {}

  /** initdb (trust auth, no fsync: a test server) and start it; as the postgres user when run as root. */
  static async create(): Promise<OwnPostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'own-pg-'));
    const pg = new OwnPostgres(dir, await freePort(), binDir());
    if (process.getuid?.() === 0) chownSync(dir, ...pg.postgresIds());
    pg.run('initdb', ['-D', pg.data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    pg.start();
    return pg;
  }

  private get data(): string {
    return join(this.dir, 'data');
  }

  /** postgres://postgres@127.0.0.1:PORT/DATABASE */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  start(): void {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
    this.run('pg_ctl', ['-D', this.data, '-o', opts, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start']);
  }

  /** `fast` ends sessions cleanly; `immediate` is a crash (recovery at the next start). */
  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    this.run('pg_ctl', ['-D', this.data, '-m', mode, '-w', '-t', '60', 'stop']);
  }

  restart(mode: 'fast' | 'immediate' = 'fast'): void {
    this.stop(mode);
    this.start();
  }

  /** Stops the server if it runs and deletes its directory. */
  remove(): void {
    try {
      this.stop('immediate');
    } catch {
      // Already stopped.
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private postgresIds(): [number, number] {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    return [uid, gid];
  }

  /** initdb and postgres refuse to run as root: run them as the postgres user then. */
  private run(tool: string, args: string[]): void {
    const program = join(this.bin, tool);
    const [cmd, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args];
    execFileSync(cmd as string, argv as string[], { stdio: 'pipe', cwd: this.dir });
  }
}
