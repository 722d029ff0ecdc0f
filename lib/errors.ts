// DynamoeError, its stable codes, and the conversion of the native addon's errors to it.

/** Stable error codes carried by every {@link DynamoeError} (the same codes the native addon uses). */
export type ErrorCode =
  | 'ERR_DYNAMOE_TYPE'
  | 'ERR_DYNAMOE_SHAPE'
  | 'ERR_DYNAMOE_POLICY'
  | 'ERR_DYNAMOE_VALUE'
  | 'ERR_DYNAMOE_DTYPE'
  | 'ERR_DYNAMOE_DISPOSED'
  | 'ERR_DYNAMOE_OUT_OF_MEMORY'
  | 'ERR_DYNAMOE_BINDING'
  | 'ERR_DYNAMOE_IO'
  | 'ERR_DYNAMOE_FORMAT'
  | 'ERR_DYNAMOE_UNSUPPORTED'
  | 'ERR_DYNAMOE_DEVICE'
  | 'ERR_DYNAMOE_ABORTED'
  | 'ERR_DYNAMOE_BUSY'
  | 'ERR_DYNAMOE_INTERNAL';

/** The error every dynamoe entry point throws (or rejects with); `code` is stable across versions. */
export class DynamoeError extends Error {
  /** A stable, machine-readable error code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'DynamoeError';
    this.code = code;
  }
}

/** Re-throws an error from the native addon as a DynamoeError (native errors carry a `code` property). */
export function fromNativeError(error: unknown): never {
  if (error instanceof DynamoeError) throw error;
  // Checked by shape, not `instanceof Error`: the addon's errors come from Node's own realm, which differs from
  // the caller's under vm contexts (jest, for one).
  if (typeof error === 'object' && error !== null) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && code.startsWith('ERR_DYNAMOE_')) {
      throw new DynamoeError(code as ErrorCode, String(message));
    }
  }
  throw error;
}

/** Runs a native call, converting its errors to DynamoeError. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    fromNativeError(error);
  }
}
