// Looks for a secret (the PIN, a private key) in text or memory under every form it could take
// there: its bytes, hex in either case, base64 at any alignment, UTF-16 (V8's two-byte strings),
// big-number limbs (byte-reversed), and pieces of it, so that a truncated or re-encoded leak is
// caught as well as a verbatim one.

export interface Pattern {
  /** What is looked for, e.g. "pin:hex"; reported when found. */
  name: string;
  bytes: Buffer;
}

export interface PatternOptions {
  /** Also the pieces of this many bytes, back to back (or at every offset, with everyOffset). */
  pieces?: number;
  /** Pieces at every offset: a text leak can start anywhere. */
  everyOffset?: boolean;
  /** Also the bytes reversed: how a little-endian big-number library (OpenSSL's BIGNUM) holds a key. */
  reversed?: boolean;
}

/** base64 of `secret` as it appears inside a longer base64 text: one form per alignment, ends trimmed. */
function base64Forms(secret: Buffer, alphabet: 'base64' | 'base64url'): string[] {
  const forms: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const text = Buffer.concat([Buffer.alloc(shift), secret, Buffer.alloc(3)]).toString(alphabet);
    // Characters that mix in bytes before or after the secret depend on them: drop a group each side.
    const start = shift === 0 ? 0 : 4;
    const end = Math.floor(((shift + secret.length) / 3)) * 4;
    if (end - start >= 8) forms.push(text.slice(start, end));
  }
  return forms;
}

/** The forms of `secret` worth searching for, each named `${label}:${form}`. */
export function patternsFor(label: string, secret: Buffer, o: PatternOptions = {}): Pattern[] {
  const out: Pattern[] = [];
  const add = (form: string, bytes: Buffer | string) => out.push({ name: `${label}:${form}`, bytes: Buffer.from(bytes) });
  const whole = (tag: string, b: Buffer) => {
    add(`${tag}raw`, b);
    add(`${tag}hex`, b.toString('hex'));
    add(`${tag}HEX`, b.toString('hex').toUpperCase());
    add(`${tag}hex-utf16`, Buffer.from(b.toString('hex'), 'utf16le'));
    base64Forms(b, 'base64').forEach((f, i) => add(`${tag}base64/${i}`, f));
    base64Forms(b, 'base64url').forEach((f, i) => add(`${tag}base64url/${i}`, f));
  };
  whole('', secret);
  if (o.reversed) whole('reversed-', Buffer.from(secret).reverse());
  // Text secrets (a PIN) are also held as UTF-16 when they share a string with non-Latin-1 text.
  if (isPrintable(secret)) add('utf16', Buffer.from(secret.toString('latin1'), 'utf16le'));
  if (o.pieces && o.pieces < secret.length) {
    const step = o.everyOffset ? 1 : o.pieces;
    for (let at = 0; at + o.pieces <= secret.length; at += step) {
      const piece = secret.subarray(at, at + o.pieces);
      add(`piece@${at}`, piece);
      if (o.reversed) add(`reversed-piece@${at}`, Buffer.from(piece).reverse());
      if (!isPrintable(secret)) add(`hex-piece@${at}`, piece.toString('hex'));
    }
  }
  return out;
}

function isPrintable(b: Buffer): boolean {
  return b.every((c) => c >= 0x20 && c < 0x7f);
}

/** Names of the patterns found in `haystack` (a string is searched as UTF-8). */
export function findPatterns(haystack: Buffer | string, patterns: readonly Pattern[]): string[] {
  if (patterns.length === 0) return [];
  const scanner = new ChunkScanner(patterns);
  scanner.push(typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack, false);
  return scanner.found();
}

/** Forms that are bytes as they are (the secret or pieces of it, either order), not an encoding. */
export const isRawForm = (p: Pattern): boolean => /:(reversed-)?(raw|piece@\d+)$/.test(p.name);

/**
 * Scans data that arrives in chunks (a process's memory, mapping by mapping) for many patterns
 * at once: an Aho-Corasick automaton, one table lookup per byte whatever the number of patterns,
 * so hundreds of key pieces cost no more than one. `contiguous` says a chunk follows the
 * previous one, so a pattern split across the two is still found.
 */
export class ChunkScanner {
  readonly hits = new Map<string, number>();
  private readonly next: Int32Array;
  private readonly outputs: number[][];
  private readonly hasOutput: Uint8Array;
  private readonly patterns: readonly Pattern[];
  private state = 0;

  constructor(patterns: readonly Pattern[]) {
    this.patterns = patterns;
    // The trie: goto[state * 256 + byte], -1 where there is no edge yet.
    const size = patterns.reduce((n, p) => n + p.bytes.length, 1);
    const next = new Int32Array(size * 256).fill(-1);
    const outputs: number[][] = [[]];
    let states = 1;
    patterns.forEach((p, index) => {
      let s = 0;
      for (const byte of p.bytes) {
        if (next[s * 256 + byte] === -1) {
          next[s * 256 + byte] = states++;
          outputs.push([]);
        }
        s = next[s * 256 + byte]!;
      }
      outputs[s]!.push(index);
    });
    // Breadth first: each state's failure state, then every missing edge taken from it (a DFA).
    const fail = new Int32Array(states);
    const queue: number[] = [];
    for (let b = 0; b < 256; b++) {
      const t = next[b]!;
      if (t === -1) next[b] = 0;
      else queue.push(t);
    }
    for (let head = 0; head < queue.length; head++) {
      const s = queue[head]!;
      outputs[s]!.push(...outputs[fail[s]!]!);
      for (let b = 0; b < 256; b++) {
        const t = next[s * 256 + b]!;
        if (t === -1) next[s * 256 + b] = next[fail[s]! * 256 + b]!;
        else {
          fail[t] = next[fail[s]! * 256 + b]!;
          queue.push(t);
        }
      }
    }
    this.next = next.subarray(0, states * 256);
    this.outputs = outputs;
    this.hasOutput = Uint8Array.from(outputs, (o) => (o.length > 0 ? 1 : 0));
  }

  push(chunk: Buffer, contiguous: boolean): void {
    const { next, hasOutput } = this;
    let s = contiguous ? this.state : 0;
    for (let i = 0; i < chunk.length; i++) {
      s = next[(s << 8) | chunk[i]!]!;
      if (hasOutput[s] === 1) {
        for (const index of this.outputs[s]!) {
          const name = this.patterns[index]!.name;
          this.hits.set(name, (this.hits.get(name) ?? 0) + 1);
        }
      }
    }
    this.state = s;
  }

  found(): string[] {
    return [...this.hits.keys()];
  }
}
