// Small validators shared by the handlers: each returns a typed value or throws InputError
// (INVALID_INPUT) naming the field, never echoing more than a short excerpt of what was sent.
import { InputError } from '../runtime/errors.js';

const KEY_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;

export function asObject(input: unknown): Record<string, unknown> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InputError('input must be a JSON object');
  return input as Record<string, unknown>;
}

export function keyIdOf(obj: Record<string, unknown>): string {
  const keyId = obj.keyId;
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) {
    throw new InputError('keyId must be 1 to 128 characters of [A-Za-z0-9._:-]');
  }
  return keyId;
}

/** Parses a hex field (no 0x prefix, even length) of at most maxBytes bytes. */
export function hexField(obj: Record<string, unknown>, name: string, maxBytes: number): Buffer {
  const value = obj[name];
  if (typeof value !== 'string') throw new InputError(`${name} must be a hex string`);
  if (value.length > maxBytes * 2) throw new InputError(`${name} is larger than ${maxBytes} bytes`);
  if (!HEX.test(value)) throw new InputError(`${name} must be hex without 0x, with an even number of digits`);
  return Buffer.from(value, 'hex');
}

/** A string field that must be one of `allowed`; undefined when absent and optional. */
export function oneOf<T extends string>(obj: Record<string, unknown>, name: string, allowed: readonly T[]): T | undefined {
  const value = obj[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InputError(`${name} must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

export function required<T>(value: T | undefined, name: string, why: string): T {
  if (value === undefined) throw new InputError(`${name} is required ${why}`);
  return value;
}

export function absent(obj: Record<string, unknown>, name: string, why: string): void {
  if (obj[name] !== undefined) throw new InputError(`${name} must be absent ${why}`);
}
