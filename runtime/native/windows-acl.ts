// What "private" means for a Windows file or directory, decided from its owner and DACL as the
// Win32 helper reads them: only this account, SYSTEM and Administrators may change it.
// Pure functions, so the policy is tested on any platform.
import type { FileSecurity as SecurityInfo } from './win32-api.js';

export type { Ace, FileSecurity as SecurityInfo } from './win32-api.js';

export const SYSTEM_SID = 'S-1-5-18';
export const ADMINISTRATORS_SID = 'S-1-5-32-544';
const CREATOR_OWNER_SID = 'S-1-3-0';

/** Rights that let a holder change a file or what a directory holds (or its ACL, or its owner). */
const WRITE_RIGHTS =
  0x0002 /* FILE_WRITE_DATA / ADD_FILE */ | 0x0004 /* APPEND_DATA / ADD_SUBDIRECTORY */ | 0x0010 /* WRITE_EA */ |
  0x0040 /* DELETE_CHILD */ | 0x0100 /* WRITE_ATTRIBUTES */ | 0x10000 /* DELETE */ | 0x40000 /* WRITE_DAC */ |
  0x80000 /* WRITE_OWNER */ | 0x2000000 /* MAXIMUM_ALLOWED */ | 0x10000000 /* GENERIC_ALL */ | 0x40000000 /* GENERIC_WRITE */;
/** Rights that let a holder read a file's content. */
const READ_RIGHTS = 0x0001 /* READ_DATA */ | 0x2000000 | 0x10000000 | 0x80000000 /* GENERIC_READ */;
const INHERIT_ONLY_ACE = 0x08;

/** The principals other than `me`, SYSTEM and Administrators that hold any of `rights` here. */
function othersWith(sec: SecurityInfo, me: string, rights: number, also: readonly string[] = []): string[] {
  const trusted = new Set([me, SYSTEM_SID, ADMINISTRATORS_SID, ...also]);
  const found = sec.aces
    // An inherit-only ACE applies to children, where CREATOR OWNER becomes whoever creates them: us.
    .filter((a) => a.allow && (a.mask & rights) !== 0 && !(a.flags & INHERIT_ONLY_ACE && a.sid === CREATOR_OWNER_SID))
    .map((a) => a.sid)
    .filter((sid) => !trusted.has(sid));
  return [...new Set(found)];
}

/** Why `sec` is not private to `me` (others could change it), or undefined when it is. */
export function writeFault(sec: SecurityInfo, me: string): string | undefined {
  // The helper reports a missing owner as "", which matches no one we trust.
  if (![me, SYSTEM_SID, ADMINISTRATORS_SID].includes(sec.owner)) return `is owned by ${sec.owner || 'no one'}, not by ${me}`;
  if (!sec.daclPresent) return 'has no DACL (everyone may write it)';
  const others = othersWith(sec, me, WRITE_RIGHTS);
  return others.length > 0 ? `may be written by ${others.join(', ')}` : undefined;
}

/** Why `sec` lets someone other than `me` (and `readers`), SYSTEM and Administrators read it, or undefined. */
export function readFault(sec: SecurityInfo, me: string, readers: readonly string[] = []): string | undefined {
  if (!sec.daclPresent) return 'has no DACL (everyone may read it)';
  const others = othersWith(sec, me, READ_RIGHTS | WRITE_RIGHTS, readers);
  return others.length > 0 ? `may be read or changed by ${others.join(', ')}` : undefined;
}

/** SDDL for a directory only `me`, SYSTEM and Administrators may use, inherited by what is made inside. */
export function privateDirectorySddl(me: string): string {
  return `O:${me}D:P(A;OICI;FA;;;${me})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)`;
}

/** SDDL for a secret file (the service's PIN): full control for SYSTEM and Administrators, read for `reader`. */
export function secretFileSddl(reader: string): string {
  return `O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;${reader})`;
}
