// Reading a request: its JSON body (size-limited), its client id, and the completion fields as Model.generate options.
// @ts-check
'use strict';

const { DynamoeError } = require('../..');
const { HttpError } = require('./responses');

/** Largest request body read, in bytes: a prompt longer than any context fits well below it. */
const MAX_BODY_BYTES = 1 << 20;

/** Longest `x-client-id` honoured; longer ones are cut so a client cannot make the queue's keys arbitrarily large. */
const MAX_CLIENT_ID_LENGTH = 128;

/**
 * @typedef {object} CompletionRequest
 * @property {string | number[]} prompt text, or token ids
 * @property {Omit<import('../..').GenerateOptions, 'signal'>} options
 * @property {boolean} stream answer with server-sent events (default) or one JSON body
 */

/**
 * The client a request is queued for: the `x-client-id` header, else the remote address. The header is trusted:
 * behind authentication, derive it from the caller's key instead.
 * @param {import('http').IncomingMessage} req
 */
function clientIdOf(req) {
  const header = req.headers['x-client-id'];
  const id = (Array.isArray(header) ? header[0] : header)?.trim();
  if (id) return `id:${id.slice(0, MAX_CLIENT_ID_LENGTH)}`;
  return `addr:${req.socket.remoteAddress ?? 'unknown'}`;
}

/**
 * Reads the whole body and parses it as JSON (400 when it is not JSON, 413 when it is too large).
 * @param {import('http').IncomingMessage} req
 * @param {number} [limit]
 * @returns {Promise<unknown>}
 */
function readJsonBody(req, limit = MAX_BODY_BYTES) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let bytes = 0;
    let failed = false;
    req.on('data', (/** @type {Buffer} */ chunk) => {
      if (failed) return;
      bytes += chunk.length;
      if (bytes > limit) {
        failed = true;
        chunks.length = 0;
        reject(new HttpError(413, 'ERR_HTTP_BODY_TOO_LARGE', `the request body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(JSON.parse(text));
      } catch (error) {
        reject(new HttpError(400, 'ERR_HTTP_BAD_JSON', `the body is not valid JSON: ${/** @type {Error} */ (error).message}`));
      }
    });
    // A client gone before the end of its body ('error' ECONNRESET, or only 'close'): without these the handler
    // would wait for 'end' forever.
    const clientClosed = () => {
      failed = true;
      reject(new HttpError(499, 'ERR_HTTP_CLIENT_CLOSED', 'the client closed the connection before the end of its request'));
    };
    req.on('error', clientClosed);
    req.on('close', () => {
      if (!req.complete) clientClosed();
    });
  });
}

/** @param {string} message */
function typeError(message) {
  return new DynamoeError('ERR_DYNAMOE_TYPE', message);
}

/**
 * `stop` as a list of strings (OpenAI's API also takes one string).
 * @param {unknown} stop
 * @returns {string[] | undefined}
 */
function stopStrings(stop) {
  if (stop === undefined) return undefined;
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    throw typeError('stop must be a string or an array of strings');
  }
  return list;
}

/**
 * Checks the shape of a completion request and maps its fields to Model.generate options. Values (ranges of
 * max_tokens, temperature, ..., the policy) are left to the library, which rejects them with a DynamoeError.
 * @param {unknown} body
 * @returns {CompletionRequest}
 */
function parseCompletionRequest(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw typeError('the request body must be a JSON object such as {"prompt": "Hello"}');
  }
  // JSON null means "not given" for every field.
  const field = (/** @type {string} */ name) => {
    const value = /** @type {Record<string, unknown>} */ (body)[name];
    return value === null ? undefined : value;
  };
  const prompt = field('prompt');
  if (typeof prompt !== 'string' && !Array.isArray(prompt)) {
    throw typeError('prompt must be a string or an array of token ids');
  }
  const stream = field('stream') ?? true;
  if (typeof stream !== 'boolean') throw typeError('stream must be a boolean');

  /** @type {CompletionRequest['options']} */
  const options = {};
  const set = (/** @type {keyof CompletionRequest['options']} */ key, /** @type {unknown} */ value) => {
    if (value !== undefined) /** @type {Record<string, unknown>} */ (options)[key] = value;
  };
  set('maxTokens', field('max_tokens'));
  set('temperature', field('temperature'));
  set('topK', field('top_k'));
  set('topP', field('top_p'));
  set('seed', field('seed'));
  set('stop', stopStrings(field('stop')));
  const policy = field('policy');
  // The library takes 'top-p:0.4', 'top-k:1,top-p:0.5' (one per MoE layer), objects and arrays, and checks them.
  if (policy !== undefined) set('policy', /** @type {import('../..').PolicyOption} */ (policy));
  return { prompt: /** @type {string | number[]} */ (prompt), options, stream };
}

module.exports = { MAX_BODY_BYTES, clientIdOf, readJsonBody, parseCompletionRequest };
