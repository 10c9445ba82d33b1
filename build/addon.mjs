// Compiles the pkcs11js native addon for the single binary: against the embedded Node's own
// headers (N-API 8), loadable on glibc 2.28, with flags that make two builds byte-identical.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWindowsAddon } from './mingw.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

/** RHEL 8. Official Node 24 binaries need no more; the addon must not raise the floor. */
export const GLIBC_FLOOR = '2.28';
/** What official Node 24 itself needs from libstdc++ (objdump -T node): the addon stays within it. */
export const GLIBCXX_CEILING = '3.4.21';

/** Compares dotted versions numerically: -1, 0 or 1. */
export function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** The highest `PREFIX_n.n` symbol version an ELF file needs or defines (objdump -T), or undefined. */
export function maxSymbolVersion(file, prefix) {
  const dump = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const versions = [...dump.matchAll(new RegExp(`\\b${prefix}_(\\d+(?:\\.\\d+)*)\\b`, 'g'))].map((m) => m[1]);
  return versions.sort(compareVersions).at(-1);
}

/**
 * Builds pkcs11js's sources into `outfile` and returns its SHA-256 (hex). Throws when the result
 * needs a glibc newer than GLIBC_FLOOR or a libstdc++ newer than Node's own.
 */
export function buildAddon({ include, outfile }) {
  const pkcs11js = dirname(createRequire(import.meta.url).resolve('pkcs11js/package.json'));
  const flags = [
    // What node-gyp passes for pkcs11js's binding.gyp on Linux, pinned to N-API 8.
    '-std=gnu++17', '-O3', '-fPIC', '-pthread', '-fno-rtti', '-fno-exceptions',
    '-DNAPI_VERSION=8', '-DNAPI_DISABLE_CPP_EXCEPTIONS', '-DBUILDING_NODE_EXTENSION', '-DNODE_GYP_MODULE_NAME=pkcs11',
    '-D_FILE_OFFSET_BITS=64', '-D_LARGEFILE_SOURCE',
    '-include', join(here, 'glibc-compat.h'),
    '-I', include, '-I', join(pkcs11js, 'includes'),
    // No checkout or cache path may reach the output (assert() strings, if any).
    `-ffile-prefix-map=${pkcs11js}=pkcs11js`, `-ffile-prefix-map=${include}=node`, `-ffile-prefix-map=${root}=.`,
    '-shared', '-Wl,-soname=pkcs11.node', '-Wl,--build-id=none', '-s',
    '-o', outfile,
    'src/dl.cpp', 'src/common.cpp', 'src/main.cpp',
    // -ldl alone finds only glibc ≥ 2.34's empty libdl.a; name libdl.so.2 so that on glibc 2.28,
    // where dlopen@GLIBC_2.2.5 lives there, the addon brings it along even outside Node.
    '-Wl,--push-state,--no-as-needed', '-l:libdl.so.2', '-Wl,--pop-state',
  ];
  execFileSync(process.env.CXX ?? 'g++', flags, {
    cwd: pkcs11js,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, LC_ALL: 'C', SOURCE_DATE_EPOCH: '0' },
  });
  const glibc = maxSymbolVersion(outfile, 'GLIBC');
  if (glibc && compareVersions(glibc, GLIBC_FLOOR) > 0) throw new Error(`${outfile} needs GLIBC_${glibc}, above the floor ${GLIBC_FLOOR}`);
  const glibcxx = maxSymbolVersion(outfile, 'GLIBCXX');
  if (glibcxx && compareVersions(glibcxx, GLIBCXX_CEILING) > 0) throw new Error(`${outfile} needs GLIBCXX_${glibcxx}, above Node's ${GLIBCXX_CEILING}`);
  return createHash('sha256').update(readFileSync(outfile)).digest('hex');
}

/** pkcs11js's sources cross-compiled for win-x64 (build/mingw.mjs); returns the addon's SHA-256. */
export function buildWindowsPkcs11js({ outfile }) {
  const pkcs11js = dirname(createRequire(import.meta.url).resolve('pkcs11js/package.json'));
  return buildWindowsAddon({ cwd: pkcs11js, sources: ['src/dl.cpp', 'src/common.cpp', 'src/main.cpp'], includeDirs: [join(pkcs11js, 'includes')], outfile });
}

/** Our Win32 helper (service control, security descriptors, event log) for win-x64; returns its SHA-256. */
export function buildWin32Helper({ outfile }) {
  return buildWindowsAddon({ cwd: root, sources: ['runtime/native/win32.cc'], libs: ['advapi32'], outfile });
}
