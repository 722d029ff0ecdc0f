// The HTTP server (node:http, no framework): routes, access log, shutdown; `node server.js [model]` runs it.
// @ts-check
'use strict';

const http = require('http');
const path = require('path');
const { handleCompletion } = require('./completion');
const { clientIdOf } = require('./request');
const { HttpError, sendError, sendJson } = require('./responses');
const { GenerationScheduler } = require('./scheduler');

/**
 * One access-log record per request.
 * @typedef {object} RequestRecord
 * @property {string} method
 * @property {string} path
 * @property {string} client
 * @property {number} status
 * @property {number} ms
 * @property {'finished' | 'aborted' | 'failed'} [outcome] completions only
 * @property {number} [tokens] completions only
 * @property {string} [finishReason]
 * @property {string} [policy]
 * @property {string} [error] the error code, when there was one
 */

/**
 * @typedef {object} ServerOptions
 * @property {import('../..').Model} model loaded once; the server never disposes it
 * @property {number} [maxActive] generations running at once (default 2); they interleave token by token
 * @property {number} [maxQueued] requests waiting for a slot, over all clients (default 16); beyond it: 503
 * @property {(record: RequestRecord) => void} [log] called once per request when it ends
 */

/**
 * @typedef {http.Server & { shutdown(): Promise<void>, scheduler: GenerationScheduler }} CompletionServer
 */

/**
 * JSON-safe model description for GET /v1/model: model.info with the checkpoint's file name only (its full path
 * would tell clients about the server's disks), plus the tokenizer's vocabulary and special tokens.
 * @param {import('../..').Model} model
 */
function describeModel(model) {
  const info = model.info;
  const tokenizer = model.tokenizer;
  return {
    ...info,
    source: path.basename(info.source),
    tokenizer: {
      vocab_size: tokenizer.vocabSize,
      bos_token_id: tokenizer.bosTokenId,
      eos_token_ids: tokenizer.eosTokenIds,
    },
  };
}

/** How long shutdown lets clients take the last bytes written to them before it closes their connections. */
const SHUTDOWN_GRACE_MS = 2000;

/** Methods each path answers; other paths are 404, other methods 405. */
const ROUTES = { '/health': 'GET', '/v1/model': 'GET', '/v1/completions': 'POST' };

/**
 * Creates the server (not listening yet: call listen). `shutdown()` stops it: it refuses queued requests, aborts
 * running generations, waits for their handlers, and closes every connection. Dispose the model afterwards.
 * @param {ServerOptions} options
 * @returns {CompletionServer}
 */
function createServer({ model, maxActive = 2, maxQueued = 16, log = () => undefined }) {
  if (!model || typeof model.generate !== 'function') throw new TypeError('createServer needs { model }');
  const scheduler = new GenerationScheduler({ maxActive, maxQueued });
  /** @type {Set<AbortController>} */
  const controllers = new Set();
  /** @type {Set<Promise<void>>} */
  const handlers = new Set();
  /** @type {Promise<void> | undefined} */
  let closing;

  /**
   * Answers one request; returns the completion outcome, if it was one.
   * @param {http.IncomingMessage} req
   * @param {http.ServerResponse} res
   * @param {string} pathname
   * @returns {Promise<Partial<RequestRecord> | undefined>}
   */
  async function route(req, res, pathname) {
    const method = ROUTES[/** @type {keyof typeof ROUTES} */ (pathname)];
    if (!method) throw new HttpError(404, 'ERR_HTTP_NOT_FOUND', `no route ${pathname}; try POST /v1/completions`);
    if (req.method !== method) {
      res.setHeader('allow', method);
      throw new HttpError(405, 'ERR_HTTP_METHOD', `${pathname} takes ${method}, not ${req.method}`);
    }
    if (pathname === '/health') {
      const ok = !model.disposed && closing === undefined;
      sendJson(res, ok ? 200 : 503, {
        status: ok ? 'ok' : 'unavailable',
        active: scheduler.active,
        queued: scheduler.queued,
        max_active: scheduler.maxActive,
        max_queued: scheduler.queue.maxSize,
      });
      return undefined;
    }
    if (pathname === '/v1/model') {
      sendJson(res, 200, describeModel(model));
      return undefined;
    }
    // Connections kept alive can still send requests while shutdown waits for running ones.
    if (closing) throw new HttpError(503, 'ERR_HTTP_SHUTTING_DOWN', 'the server is shutting down');
    return handleCompletion({ model, scheduler, controllers }, req, res);
  }

  /**
   * @param {http.IncomingMessage} req
   * @param {http.ServerResponse} res
   */
  async function serve(req, res) {
    const started = performance.now();
    const pathname = (req.url ?? '/').split('?')[0];
    /** @type {RequestRecord} */
    const record = { method: req.method ?? '', path: pathname, client: clientIdOf(req), status: 200, ms: 0 };
    // An error event after the response is gone (client reset) must not become an uncaught exception.
    res.on('error', () => undefined);
    try {
      Object.assign(record, await route(req, res, pathname));
    } catch (error) {
      const sent = sendError(res, error);
      Object.assign(record, { status: sent.status, error: sent.code });
      if (sent.code === 'ERR_HTTP_INTERNAL') console.error('dynamoe server: unexpected error:', error);
    }
    record.ms = Math.round(performance.now() - started);
    try {
      log(record);
    } catch (error) {
      console.error('dynamoe server: the log callback threw:', error);
    }
  }

  const server = http.createServer((req, res) => {
    const handled = serve(req, res).finally(() => handlers.delete(handled));
    handlers.add(handled);
  });
  /** @type {Set<import('net').Socket>} open connections, ended by shutdown */
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Malformed HTTP never reaches the handler: answer 400 on the socket instead of letting it error.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  function shutdown() {
    closing ??= (async () => {
      const refusal = new HttpError(503, 'ERR_HTTP_SHUTTING_DOWN', 'the server is shutting down');
      scheduler.close(refusal);
      for (const controller of controllers) controller.abort(refusal);
      const closed = new Promise((resolve) => server.close(() => resolve(undefined)));
      await Promise.allSettled([...handlers]);
      // end(), not destroy(): the last events written still reach their clients. Keep-alive connections would
      // otherwise hold close() open; a client that stopped reading is cut off after a grace period.
      for (const socket of sockets) socket.end();
      const force = setTimeout(() => sockets.forEach((socket) => socket.destroy()), SHUTDOWN_GRACE_MS);
      await closed;
      clearTimeout(force);
    })();
    return closing;
  }

  return Object.assign(server, { shutdown, scheduler });
}

/**
 * @param {string} name
 * @param {number} fallback
 */
function integerFromEnv(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be an integer >= 0, got '${text}'`);
  return value;
}

/** @param {RequestRecord} r */
function logLine(r) {
  const extra = r.outcome ? ` ${r.outcome} ${r.tokens} tokens${r.finishReason ? ` (${r.finishReason}, ${r.policy})` : ''}` : '';
  console.log(`${r.method} ${r.path} ${r.status} ${r.ms} ms ${r.client}${extra}${r.error ? ` ${r.error}` : ''}`);
}

/** `node examples/http-server/server.js [model]`: loads the model, listens on HOST:PORT, stops on SIGINT/SIGTERM. */
async function main() {
  const { loadServedModel, modelLocation } = require('./model-source');
  const model = await loadServedModel(modelLocation(process.argv, process.env), (line) => console.log(line));
  const server = createServer({
    model,
    maxActive: integerFromEnv('MAX_ACTIVE', 2),
    maxQueued: integerFromEnv('MAX_QUEUED', 16),
    log: logLine,
  });
  const host = process.env.HOST || '127.0.0.1';
  const port = integerFromEnv('PORT', 8080);
  server.on('error', (error) => {
    console.error(`dynamoe server: cannot listen on ${host}:${port}: ${error.message}`);
    model.dispose();
    process.exitCode = 1;
  });
  server.listen(port, host, () => console.log(`dynamoe server listening on http://${host}:${port}`));
  const stop = async () => {
    console.log('shutting down ...');
    await server.shutdown();
    model.dispose();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) {
  main().catch((error) => {
    const { code, message } = /** @type {{ code?: string, message?: string }} */ (Object(error));
    console.error(`dynamoe server: ${code ? `${code}: ` : ''}${message ?? String(error)}`);
    process.exitCode = 1;
  });
}

module.exports = { createServer, describeModel };
