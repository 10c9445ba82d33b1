// A small ustar writer for build/oci.mjs: every header field comes from the entry we are given
// (owner, mode, mtime), none from the file system, so the same entries give the same bytes.

const BLOCK = 512;

/**
 * One entry: a regular file (`data`), a directory, or a symbolic link (`target`).
 * @typedef {{ path: string, type: 'file' | 'dir' | 'symlink', mode: number, uid?: number, gid?: number, mtime: number, data?: Buffer, target?: string }} TarEntry
 */

/** Writes `value` as a NUL-terminated octal field of `width` bytes. */
function octal(header, offset, width, value) {
  const text = value.toString(8).padStart(width - 1, '0');
  if (text.length > width - 1) throw new Error(`tar: ${value} does not fit a ${width}-byte field`);
  header.write(`${text}\0`, offset, 'ascii');
}

/** ustar keeps a path in name (100 bytes) and prefix (155): split at a slash when it is longer. */
function splitPath(path) {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: '' };
  for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) {
    const prefix = path.slice(0, at);
    const name = path.slice(at + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== '') return { name, prefix };
  }
  throw new Error(`tar: path too long for ustar: ${path}`);
}

/** @param {TarEntry} entry */
function header(entry) {
  const h = Buffer.alloc(BLOCK);
  const path = entry.type === 'dir' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path;
  const { name, prefix } = splitPath(path);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, entry.mode);
  octal(h, 108, 8, entry.uid ?? 0);
  octal(h, 116, 8, entry.gid ?? 0);
  octal(h, 124, 12, entry.type === 'file' ? entry.data.length : 0);
  octal(h, 136, 12, entry.mtime);
  h.write({ file: '0', dir: '5', symlink: '2' }[entry.type], 156, 'ascii');
  if (entry.type === 'symlink') {
    if (Buffer.byteLength(entry.target) > 100) throw new Error(`tar: link target too long: ${entry.target}`);
    h.write(entry.target, 157, 100, 'utf8');
  }
  h.write('ustar\0' + '00', 257, 'ascii');
  // User and group names stay empty: runtimes then apply the numeric ids as they are.
  h.write(prefix, 345, 155, 'utf8');
  // The checksum is computed with its own field read as eight spaces.
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** The archive of `entries`, in the order given (callers sort them), with the two closing zero blocks. */
export function tar(entries) {
  const parts = [];
  for (const entry of entries) {
    parts.push(header(entry));
    if (entry.type === 'file') {
      parts.push(entry.data);
      const pad = (BLOCK - (entry.data.length % BLOCK)) % BLOCK;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
