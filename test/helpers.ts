// Small assertion helpers shared by the test files.
import { DynamoeError, ErrorCode } from '../lib';

/**
 * The typed-array kind of a value, compared by tag rather than instanceof: the addon creates its arrays in Node's
 * main realm, while jest runs each test file in its own vm context with its own Int32Array constructor.
 */
export function typedArrayTag(value: unknown): string {
  return Object.prototype.toString.call(value).slice(8, -1);
}

/** An error code a test expects. */
export type Code = ErrorCode;

export function expectDynamoeError(error: unknown, code: Code | Code[], message?: RegExp): void {
  expect(error).toBeInstanceOf(DynamoeError);
  expect(error).toBeInstanceOf(Error);
  const e = error as DynamoeError;
  expect(e.name).toBe('DynamoeError');
  if (Array.isArray(code)) expect(code).toContain(e.code);
  else expect(e.code).toBe(code);
  expect(e.message.length).toBeGreaterThan(10);
  if (message) expect(e.message).toMatch(message);
}

/** Calls fn, which must return a promise that rejects (not throw synchronously). */
export async function expectRejection(fn: () => Promise<unknown>, code: Code | Code[], message?: RegExp): Promise<void> {
  let promise: Promise<unknown> | undefined;
  expect(() => {
    promise = fn();
  }).not.toThrow();
  expect(promise).toBeInstanceOf(Promise);
  let caught: unknown = undefined;
  let resolved = false;
  try {
    await promise;
    resolved = true;
  } catch (error) {
    caught = error;
  }
  expect(resolved).toBe(false);
  expectDynamoeError(caught, code, message);
}

export function expectThrow(fn: () => unknown, code: Code | Code[], message?: RegExp): void {
  let caught: unknown = undefined;
  let returned = false;
  try {
    fn();
    returned = true;
  } catch (error) {
    caught = error;
  }
  expect(returned).toBe(false);
  expectDynamoeError(caught, code, message);
}

