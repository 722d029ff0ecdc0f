// JSON responses and errors: the {error: {code, message}} body, the HTTP status of each error code, safe JSON.
// @ts-check
'use strict';

/** An error the server itself answers with (bad JSON, unknown route, full queue), with its HTTP status. */
class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
  }
}

// Library codes that mean "the request was wrong"; the others are the server's or the model's trouble.
const CLIENT_ERROR_CODES = new Set([
  'ERR_DYNAMOE_TYPE',
  'ERR_DYNAMOE_SHAPE',
  'ERR_DYNAMOE_POLICY',
  'ERR_DYNAMOE_VALUE',
  'ERR_DYNAMOE_DTYPE',
]);

/**
 * The HTTP status, code and message an error is answered with. DynamoeErrors are recognised by their `code`, not
 * by `instanceof`, so a model built from another copy of the library (tests, bundlers) is handled the same.
 * @param {unknown} error
 * @returns {{ status: number, code: string, message: string }}
 */
function describeError(error) {
  if (error instanceof HttpError) return { status: error.status, code: error.code, message: error.message };
  const { code, message } = /** @type {{ code?: unknown, message?: unknown }} */ (Object(error));
  if (typeof code === 'string' && code.startsWith('ERR_DYNAMOE_')) {
    const status = CLIENT_ERROR_CODES.has(code)
      ? 400
      : code === 'ERR_DYNAMOE_ABORTED'
        ? 499 // nginx's "client closed request": the client is gone and never sees it
        : code === 'ERR_DYNAMOE_DISPOSED'
          ? 503
          : 500;
    return { status, code, message: String(message) };
  }
  // Anything else is a bug or a system failure: its message may hold internals, so it is logged, not sent.
  return { status: 500, code: 'ERR_HTTP_INTERNAL', message: 'internal server error' };
}

/**
 * JSON.stringify replacer for what model info and statistics hold: bigints (as numbers when exact, else strings),
 * typed arrays (as arrays) and Maps (as objects).
 * @param {string} _key
 * @param {unknown} value
 */
function jsonReplacer(_key, value) {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(/** @type {ArrayLike<unknown>} */ (/** @type {unknown} */ (value)));
  }
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return Array.from(value);
  return value;
}

/** @param {unknown} value */
function toJson(value) {
  return JSON.stringify(value, jsonReplacer);
}

/**
 * Sends `body` as JSON with `status`, unless the response was already sent or its client is gone.
 * @param {import('http').ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 * @param {Record<string, string>} [headers]
 */
function sendJson(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const text = toJson(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/**
 * Answers an error as {error: {code, message}}; returns what was sent.
 * @param {import('http').ServerResponse} res
 * @param {unknown} error
 */
function sendError(res, error) {
  const { status, code, message } = describeError(error);
  const headers = status === 503 ? { 'retry-after': '1' } : undefined;
  sendJson(res, status, { error: { code, message } }, headers);
  return { status, code, message };
}

module.exports = { HttpError, describeError, jsonReplacer, toJson, sendJson, sendError };
