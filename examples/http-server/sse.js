// Server-sent events on an http.ServerResponse: the headers, one `data:` line of JSON per event, backpressure, [DONE].
// @ts-check
'use strict';

const { toJson } = require('./responses');

/**
 * Starts an event stream: status 200 and the headers are sent at once, so the client knows it was accepted
 * while its request may still wait in the queue.
 * @param {import('http').ServerResponse} res
 */
function startEventStream(res) {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no', // proxies such as nginx would otherwise hold the events back
  });
  res.flushHeaders();
}

/**
 * Resolves when the client has taken the data written so far, or has gone away.
 * @param {import('http').ServerResponse} res
 * @returns {Promise<void>}
 */
function drained(res) {
  if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Sends one event whose data is `payload` as JSON (JSON has no raw newlines, so it is one `data:` line). Waits while
 * the client reads slower than tokens come, so a slow reader holds back its own generation, not server memory.
 * @param {import('http').ServerResponse} res
 * @param {unknown} payload
 */
async function sendEvent(res, payload) {
  if (res.destroyed || res.writableEnded) return;
  res.write(`data: ${toJson(payload)}\n\n`);
  await drained(res);
}

/**
 * Ends the stream with the `data: [DONE]` sentinel OpenAI-style clients wait for.
 * @param {import('http').ServerResponse} res
 */
function endEventStream(res) {
  if (res.destroyed || res.writableEnded) return;
  res.end('data: [DONE]\n\n');
}

module.exports = { startEventStream, sendEvent, endEventStream };
