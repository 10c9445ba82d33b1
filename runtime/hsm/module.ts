// Loads the vendor's PKCS#11 library, initialises it for multi-threaded use, and finds the
// token the operator named. The only owner of C_Initialize / C_Finalize.
import * as pkcs11 from 'pkcs11js';
import { ConfigError } from '../errors.js';
import { asHsmError } from './rv.js';

export interface TokenSelector {
  label?: string | undefined;
  serial?: string | undefined;
  slot?: number | undefined;
}

export interface TokenSummary {
  slot: pkcs11.Handle;
  slotId: string;
  slotDescription: string;
  tokenPresent: boolean;
  label?: string;
  serial?: string;
  model?: string;
  manufacturer?: string;
  initialized?: boolean;
}

/** CK_SLOT_INFO flag; pkcs11js does not export it. */
const CKF_TOKEN_PRESENT = 0x1;

/** What the loader's error means for the operator: pkcs11js's bare "Win32 error N", or a library the module needs (dlopen names it). */
function loadHint(message: string, path: string): string {
  const code = /^Win32 error (\d+)/.exec(message)?.[1];
  if (code === '126') return ' (the DLL, or a DLL it needs, was not found: check the path and install the vendor client)';
  if (code === '193') return ' (not a 64-bit Windows DLL)';
  const needed = /^([^:]+): cannot open shared object file/.exec(message)?.[1];
  if (needed && needed !== path) {
    return ` (the module needs ${needed}, which is not on the library path: install it, or mount its directory and set LD_LIBRARY_PATH to it; the container image holds only glibc, libstdc++, libgcc_s and OpenSSL 3's libssl and libcrypto)`;
  }
  return '';
}

const trim = (s: string) => s.replace(/\0+$/, '').trim();

/** A slot handle (a little-endian CK_ULONG) as a decimal string. */
export function slotIdOf(slot: pkcs11.Handle): string {
  return slot.length >= 8 ? slot.readBigUInt64LE(0).toString() : slot.readUInt32LE(0).toString();
}

export class Pkcs11Library {
  readonly lib = new pkcs11.PKCS11();
  private initialized = false;

  constructor(readonly path: string) {
    try {
      this.lib.load(path);
    } catch (err) {
      const why = (err as Error).message.split('\n')[0]!;
      throw new ConfigError(`cannot load PKCS#11 module ${path}: ${why}${loadHint(why, path)}`);
    }
  }

  /** C_Initialize with OS locking: with NULL arguments SoftHSM crashed under parallel calls. */
  initialize(): void {
    try {
      this.lib.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK });
    } catch (err) {
      if ((err as { code?: number }).code !== pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw asHsmError(err, 'C_Initialize');
    }
    this.initialized = true;
  }

  /** Best effort: a library that lost its device may fail here, and we re-initialise anyway. */
  finalize(): void {
    if (!this.initialized) return;
    this.initialized = false;
    try {
      this.lib.C_Finalize();
    } catch {
      /* already gone */
    }
  }

  /** Closes the dlopen handle; only after finalize, at process end. */
  close(): void {
    this.finalize();
    try {
      this.lib.close();
    } catch {
      /* nothing to do */
    }
  }

  info(): { manufacturer: string; description: string; version: string; cryptoki: string } {
    const i = this.lib.C_GetInfo();
    return {
      manufacturer: trim(i.manufacturerID),
      description: trim(i.libraryDescription),
      version: `${i.libraryVersion.major}.${i.libraryVersion.minor}`,
      cryptoki: `${i.cryptokiVersion.major}.${i.cryptokiVersion.minor}`,
    };
  }

  listTokens(): TokenSummary[] {
    return this.lib.C_GetSlotList(false).map((slot) => {
      const si = this.lib.C_GetSlotInfo(slot);
      const present = (si.flags & CKF_TOKEN_PRESENT) !== 0;
      const summary: TokenSummary = {
        slot,
        slotId: slotIdOf(slot),
        slotDescription: trim(si.slotDescription),
        tokenPresent: present,
      };
      if (!present) return summary;
      const ti = this.lib.C_GetTokenInfo(slot);
      return {
        ...summary,
        label: trim(ti.label),
        serial: trim(ti.serialNumber),
        model: trim(ti.model),
        manufacturer: trim(ti.manufacturerID),
        initialized: (ti.flags & pkcs11.CKF_TOKEN_INITIALIZED) !== 0,
      };
    });
  }

  /**
   * Finds the one token matching the selector. Label is the default way because SoftHSM (and
   * some network HSMs) give a slot a new id after re-initialisation.
   */
  findToken(sel: TokenSelector): TokenSummary & { label: string; serial: string } {
    const tokens = this.listTokens().filter((t) => t.tokenPresent && t.initialized);
    const matches = tokens.filter(
      (t) =>
        (sel.label === undefined || t.label === sel.label) &&
        (sel.serial === undefined || t.serial === sel.serial) &&
        (sel.slot === undefined || t.slotId === String(sel.slot)),
    );
    const wanted = describeSelector(sel);
    if (matches.length === 0) {
      const seen = tokens.map((t) => `"${t.label}" (serial ${t.serial}, slot ${t.slotId})`).join(', ') || 'none';
      throw new ConfigError(`no token matches ${wanted}; tokens present: ${seen}`);
    }
    if (matches.length > 1) throw new ConfigError(`${matches.length} tokens match ${wanted}; add --token-serial or --slot`);
    return matches[0] as TokenSummary & { label: string; serial: string };
  }
}

export function describeSelector(sel: TokenSelector): string {
  const parts = [];
  if (sel.label !== undefined) parts.push(`label "${sel.label}"`);
  if (sel.serial !== undefined) parts.push(`serial ${sel.serial}`);
  if (sel.slot !== undefined) parts.push(`slot ${sel.slot}`);
  return parts.join(', ') || 'any token';
}
