// Argument checks shared by the public entry points; each failure is a DynamoeError saying expected vs given.
import { DynamoeError, ErrorCode } from './errors';

/** Describes a value for an error message. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as { length: number }).length})`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** Throws ERR_DYNAMOE_TYPE: `what` must be `expected`, and what was given. */
export function typeError(what: string, expected: string, value: unknown): never {
  throw new DynamoeError('ERR_DYNAMOE_TYPE', `${what} must be ${expected}, got ${describe(value)}`);
}

export function requireObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `${what} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Most experts a layer may have (the native layer's limit). */
export const MAX_EXPERTS = 65536;

/** A positive integer no larger than `max`. */
export function requireSize(value: unknown, what: string, max = 2 ** 24): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${what} must be an integer in [1, ${max}], got ${describe(value)}`);
  }
  return value;
}

export function requireFloat32Array(value: unknown, length: number, what: string): Float32Array {
  if (!(value instanceof Float32Array)) {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `${what} must be a Float32Array, got ${describe(value)}`);
  }
  if (value.length !== length) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${what} must have ${length} elements, got ${value.length}`);
  }
  return value;
}

/** How {@link requireName} words its error: the names quoted or bare, and the rejected value as `shown` writes it. */
export interface NameMessage {
  /** Environment variables and CLI flags list the names bare: `cpu, cuda or auto`. */
  bareNames?: boolean;
  /** Writes the rejected value (default {@link describe}). */
  shown?: (value: unknown) => string;
}

/** `value` when it is one of `names`; otherwise `code`: "<what> must be 'a', 'b' or 'c', got <value>". */
export function requireName<T extends string>(
  value: unknown,
  names: readonly T[],
  what: string,
  code: ErrorCode,
  message: NameMessage = {},
): T {
  if ((names as readonly unknown[]).includes(value)) return value as T;
  const listed = names.map((name) => (message.bareNames ? name : `'${name}'`));
  const list = `${listed.slice(0, -1).join(', ')} or ${listed[listed.length - 1]}`;
  throw new DynamoeError(code, `${what} must be ${list}, got ${(message.shown ?? describe)(value)}`);
}

/** An optional integer option in [min, max]: `fallback` when undefined, else ERR_DYNAMOE_TYPE / ERR_DYNAMOE_VALUE. */
export function integerOption(value: unknown, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') typeError(name, 'an integer', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}
