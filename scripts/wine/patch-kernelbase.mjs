// Makes the Wine 8 workaround for Node 24 that ../shared/FINDINGS.md measured: a copy of Wine's
// kernelbase.dll whose export "VirtualAlloc2" is renamed "VirtualAlloc1" (V8 then takes its
// documented fallback for Windows without placeholder reservations, which Wine 8 lacks) and
// whose "Wine builtin DLL" marker is changed, so Wine loads the copy as a native DLL.
// The shipped exe is never touched; only the test prefix gets this file.
// Usage: node scripts/wine/patch-kernelbase.mjs SOURCE_DLL OUT_DLL
import { readFileSync, writeFileSync } from 'node:fs';

const BUILTIN_MARKER = 'Wine builtin DLL';

/** File offset of a relative virtual address, through the section table. */
function offsetOf(buf, sections, rva) {
  for (const s of sections) if (rva >= s.va && rva < s.va + Math.max(s.vsize, s.rawSize)) return rva - s.va + s.raw;
  throw new Error(`RVA 0x${rva.toString(16)} is in no section`);
}

export function patchKernelbase(buf) {
  const pe = buf.readUInt32LE(0x3c);
  if (buf.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new Error('not a PE file');
  const nSections = buf.readUInt16LE(pe + 6);
  const optSize = buf.readUInt16LE(pe + 20);
  const opt = pe + 24;
  if (buf.readUInt16LE(opt) !== 0x20b) throw new Error('not a PE32+ (x64) file');
  const exportRva = buf.readUInt32LE(opt + 112);
  const sections = [];
  for (let i = 0, at = opt + optSize; i < nSections; i++, at += 40) {
    sections.push({ vsize: buf.readUInt32LE(at + 8), va: buf.readUInt32LE(at + 12), rawSize: buf.readUInt32LE(at + 16), raw: buf.readUInt32LE(at + 20) });
  }
  const dir = offsetOf(buf, sections, exportRva);
  const count = buf.readUInt32LE(dir + 24);
  const names = offsetOf(buf, sections, buf.readUInt32LE(dir + 32));
  const nameAt = (i) => {
    const at = offsetOf(buf, sections, buf.readUInt32LE(names + 4 * i));
    return { at, name: buf.toString('latin1', at, buf.indexOf(0, at)) };
  };
  let patched = false;
  for (let i = 0; i < count; i++) {
    const { at, name } = nameAt(i);
    if (name !== 'VirtualAlloc2') continue;
    // The loader binary-searches this table: the new name must sort between its neighbours.
    const before = i > 0 ? nameAt(i - 1).name : '';
    const after = i + 1 < count ? nameAt(i + 1).name : '\uffff';
    if (!(before < 'VirtualAlloc1' && 'VirtualAlloc1' < after)) throw new Error(`renaming would unsort the export table (${before} / ${after})`);
    buf.write('1', at + 'VirtualAlloc'.length, 'latin1');
    patched = true;
  }
  if (!patched) throw new Error('no export named VirtualAlloc2');
  const marker = buf.indexOf(BUILTIN_MARKER, 0, 'latin1');
  if (marker < 0 || marker > 0x100) throw new Error(`no "${BUILTIN_MARKER}" marker in the DOS header`);
  buf.write('Wine patched DLL', marker, 'latin1');
  return buf;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const [source, out] = process.argv.slice(2);
  if (!source || !out) {
    console.error('usage: node patch-kernelbase.mjs SOURCE_DLL OUT_DLL');
    process.exit(2);
  }
  writeFileSync(out, patchKernelbase(readFileSync(source)));
}
