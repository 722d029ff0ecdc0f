// The server's errors in OpenAI's shape ({ error: { message, type, param, code } }) and the HTTP status of each.
import { ErrorCode } from '../errors';

/** `code` of an error the server answers itself: a library code, or one of the server's own. */
export type ServeErrorCode =
  | ErrorCode
  | 'model_not_found'
  | 'not_found'
  | 'method_not_allowed'
  | 'request_too_large'
  | 'queue_full'
  | 'server_shutting_down'
  | 'client_closed_request'
  | 'internal_error';

/** OpenAI's `error.type` for each kind of failure. */
export type ServeErrorType = 'invalid_request_error' | 'rate_limit_error' | 'server_error';

/** The body of every error response (and of an error event in a stream). */
export interface OpenAIErrorBody {
  error: { message: string; type: ServeErrorType; param: string | null; code: string };
}

/** An error with the HTTP status the server answers it with. */
export class ServeError extends Error {
  constructor(
    readonly status: number,
    readonly code: ServeErrorCode,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'ServeError';
  }
}

// Library codes that mean "the request was wrong"; the others are the server's or the model's trouble.
const CLIENT_ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'ERR_DYNAMOE_TYPE',
  'ERR_DYNAMOE_SHAPE',
  'ERR_DYNAMOE_POLICY',
  'ERR_DYNAMOE_VALUE',
  'ERR_DYNAMOE_DTYPE',
  'ERR_DYNAMOE_UNSUPPORTED',
]);

// The request field a library error is about, when its code says.
const PARAM_OF_CODE: Readonly<Record<string, string>> = { ERR_DYNAMOE_POLICY: 'routing_policy' };

/** What an error is answered with: status, and the OpenAI error object. */
export interface DescribedError {
  status: number;
  body: OpenAIErrorBody;
}

function typeOfStatus(status: number): ServeErrorType {
  if (status === 429) return 'rate_limit_error';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

function body(status: number, code: string, message: string, param: string | null): DescribedError {
  return { status, body: { error: { message, type: typeOfStatus(status), param, code } } };
}

/**
 * The status and body an error is answered with. DynamoeErrors are recognised by their `code`, not by
 * `instanceof`, so a model from another copy of the library is handled the same. Any other error is a bug or a
 * system failure: its message may hold internals, so the caller logs it and the client gets a generic 500.
 */
export function describeError(error: unknown): DescribedError {
  if (error instanceof ServeError) return body(error.status, error.code, error.message, error.param);
  const { code, message } = Object(error) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && code.startsWith('ERR_DYNAMOE_')) {
    const status = CLIENT_ERROR_CODES.has(code)
      ? 400
      : code === 'ERR_DYNAMOE_BUSY'
        ? 429
        : code === 'ERR_DYNAMOE_ABORTED'
        ? 499 // nginx's "client closed request": the client is gone and never sees it
        : code === 'ERR_DYNAMOE_DISPOSED' || code === 'ERR_DYNAMOE_OUT_OF_MEMORY'
          ? 503
          : 500;
    return body(status, code, String(message), PARAM_OF_CODE[code] ?? null);
  }
  return body(500, 'internal_error', 'internal server error', null);
}

/** True when {@link describeError} hides this error's details (so the server should log them). */
export function isUnexpected(error: unknown): boolean {
  return describeError(error).body.error.code === 'internal_error';
}
