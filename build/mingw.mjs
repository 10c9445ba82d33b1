// Cross-compiles Node-API addons for win-x64 with mingw-w64, on Linux and offline. The addon's
// napi_* imports go through a delay-load import library for "NODE.EXE" that a hook resolves to
// the running executable (build/win/delay-load-hook.c), so the addon loads in hsm-driver.exe
// whatever it is renamed to. Static libgcc/libstdc++/winpthread: it needs only system DLLs.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const headers = dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json'));

export const MINGW_CXX = 'x86_64-w64-mingw32-g++-posix';
export const MINGW_CC = 'x86_64-w64-mingw32-gcc-posix';
export const DLLTOOL = 'x86_64-w64-mingw32-dlltool';

/** Runs a tool quietly (pkcs11js's headers make mingw warn a lot); its output is shown only on failure. */
function run(command, args, cwd) {
  try {
    execFileSync(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', SOURCE_DATE_EPOCH: '0' } });
  } catch (err) {
    if (err.code === 'ENOENT') throw new Error(`${command} not found: install Debian's g++-mingw-w64-x86-64-posix and binutils-mingw-w64-x86-64 (scripts/install-deps.sh)`);
    throw new Error(`${command} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

/** True when the mingw-w64 cross compiler is installed. */
export function hasMingw() {
  try {
    execFileSync(MINGW_CXX, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Compiles `sources` (paths relative to `cwd`) into the Windows addon `outfile` and returns its
 * SHA-256 (hex). `libs` are extra Windows import libraries (e.g. 'advapi32').
 */
export function buildWindowsAddon({ cwd, sources, includeDirs = [], defines = [], libs = [], outfile }) {
  const work = mkdtempSync(join(tmpdir(), 'hsm-driver-mingw-'));
  try {
    const delayLib = join(work, 'node_api_delay.a');
    run(DLLTOOL, ['-d', join(headers, 'def', 'node_api.def'), '-y', delayLib], work);
    const hook = join(work, 'delay-load-hook.o');
    run(MINGW_CC, ['-O2', '-c', join(here, 'win', 'delay-load-hook.c'), '-o', hook], work);
    run(
      MINGW_CXX,
      [
        '-std=c++17', '-O2', '-shared', '-Wno-attributes',
        '-DNAPI_VERSION=8', '-DNAPI_EXTERN=', '-DNAPI_DISABLE_CPP_EXCEPTIONS', '-DBUILDING_NODE_EXTENSION',
        '-D_WIN32_WINNT=0x0A00', '-DUNICODE', '-D_UNICODE',
        ...defines.map((d) => `-D${d}`),
        '-I', join(headers, 'include'), ...includeDirs.flatMap((d) => ['-I', d]),
        // No path of this machine in the output, no timestamp in the PE header: reproducible.
        `-ffile-prefix-map=${cwd}=.`, `-ffile-prefix-map=${root}=.`, `-ffile-prefix-map=${work}=.`,
        // The default image base is hashed from the output's (temp) path; ASLR relocates it anyway.
        '-Wl,--no-insert-timestamp', '-Wl,--disable-auto-image-base', '-s',
        '-o', outfile,
        ...sources, hook, delayLib,
        '-static',
        ...libs.map((l) => `-l${l}`),
      ],
      cwd,
    );
    return createHash('sha256').update(readFileSync(outfile)).digest('hex');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The DLLs a PE file imports, upper-cased, delay-loaded ones included (objdump -p). */
export function peImports(file) {
  const dump = execFileSync('x86_64-w64-mingw32-objdump', ['-p', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return [...new Set([...dump.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toUpperCase()))].sort();
}
