// The Windows "private" rules on owner and DACL, as the Win32 helper reports them. The helper
// itself is exercised under Wine (test/build/windows-exe.test.ts); these pin the policy down.
import { describe, expect, it } from 'vitest';
import { ADMINISTRATORS_SID, readFault, SYSTEM_SID, writeFault, type Ace, type SecurityInfo } from '../../../runtime/native/windows-acl.js';

const ME = 'S-1-5-21-1-2-3-1001';
const OTHER = 'S-1-5-21-1-2-3-1002';
const USERS = 'S-1-5-32-545';
const FULL = 0x1f01ff;
const READ = 0x1200a9;
const allow = (sid: string, mask: number, flags = 0): Ace => ({ allow: true, type: 0, sid, mask, inherited: false, flags });
const sec = (aces: Ace[], owner = ME): SecurityInfo => ({ owner, daclPresent: true, daclProtected: true, aces });
const privateDir = [allow(ME, FULL, 3), allow(SYSTEM_SID, FULL, 3), allow(ADMINISTRATORS_SID, FULL, 3)];

describe('writeFault', () => {
  it('accepts what privateDirectorySddl makes, and Users with read only', () => {
    expect(writeFault(sec(privateDir), ME)).toBeUndefined();
    expect(writeFault(sec([...privateDir, allow(USERS, READ)]), ME)).toBeUndefined();
    expect(writeFault(sec(privateDir, ADMINISTRATORS_SID), ME)).toBeUndefined();
  });
  it('names another owner, a missing DACL, and every other principal that may write', () => {
    expect(writeFault(sec(privateDir, OTHER), ME)).toBe(`is owned by ${OTHER}, not by ${ME}`);
    expect(writeFault({ ...sec(privateDir), daclPresent: false }, ME)).toMatch(/no DACL/);
    expect(writeFault(sec([...privateDir, allow(USERS, 0x0002)]), ME)).toBe(`may be written by ${USERS}`); // FILE_ADD_FILE
    expect(writeFault(sec([...privateDir, allow(OTHER, 0x40000)]), ME)).toBe(`may be written by ${OTHER}`); // WRITE_DAC
    expect(writeFault(sec([...privateDir, allow(OTHER, 0x10000000)]), ME)).toBe(`may be written by ${OTHER}`); // GENERIC_ALL
  });
  it('ignores deny entries, and CREATOR OWNER when it only passes to children', () => {
    expect(writeFault(sec([...privateDir, { ...allow(OTHER, FULL), allow: false }]), ME)).toBeUndefined();
    expect(writeFault(sec([...privateDir, allow('S-1-3-0', FULL, 0x08 | 0x03)]), ME)).toBeUndefined();
    expect(writeFault(sec([...privateDir, allow('S-1-3-0', FULL, 0)]), ME)).toMatch(/S-1-3-0/);
  });
});

describe('readFault', () => {
  it('lets only me, the named readers, SYSTEM and Administrators read a secret', () => {
    const pinFile = [allow(SYSTEM_SID, FULL), allow(ADMINISTRATORS_SID, FULL), allow('S-1-5-19', READ)];
    expect(readFault(sec(pinFile, ADMINISTRATORS_SID), 'S-1-5-19')).toBeUndefined();
    expect(readFault(sec(pinFile, ADMINISTRATORS_SID), ME, ['S-1-5-19'])).toBeUndefined();
    expect(readFault(sec(pinFile, ADMINISTRATORS_SID), ME)).toBe('may be read or changed by S-1-5-19');
    expect(readFault(sec([...pinFile, allow(USERS, 0x80000000)]), 'S-1-5-19')).toMatch(USERS); // GENERIC_READ
  });
});
