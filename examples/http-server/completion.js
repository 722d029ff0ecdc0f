// POST /v1/completions: check the request, wait for a fair turn, run the generation, stream events or answer JSON.
// @ts-check
'use strict';

const { clientIdOf, parseCompletionRequest, readJsonBody } = require('./request');
const { describeError, HttpError, sendJson } = require('./responses');
const { endEventStream, sendEvent, startEventStream } = require('./sse');
const { completionSummary, expertUsage } = require('./summary');

/**
 * What handleCompletion needs from the server.
 * @typedef {object} CompletionContext
 * @property {import('../..').Model} model
 * @property {import('./scheduler').GenerationScheduler} scheduler
 * @property {Set<AbortController>} controllers one per request being served; shutdown aborts them
 */

/**
 * How a completion ended, for the access log.
 * @typedef {object} CompletionOutcome
 * @property {number} status
 * @property {'finished' | 'aborted' | 'failed'} outcome
 * @property {number} tokens tokens sent (streamed) or generated
 * @property {string} [finishReason]
 * @property {string} [policy] the expert usage's policy label
 * @property {string} [error] the error code, when it did not finish
 */

/**
 * Serves one completion. Throws (for the server to answer with an error status) only before any of the response
 * is sent; once an event stream has started, a failure becomes an `{"error": ...}` event before `[DONE]`.
 * @param {CompletionContext} context
 * @param {import('http').IncomingMessage} req
 * @param {import('http').ServerResponse} res
 * @returns {Promise<CompletionOutcome>}
 */
async function handleCompletion({ model, scheduler, controllers }, req, res) {
  const received = performance.now();
  const request = parseCompletionRequest(await readJsonBody(req));
  const controller = new AbortController();
  // 'close' also follows a normal end; only a response not yet finished means the client went away.
  const onClose = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.on('close', onClose);
  controllers.add(controller);
  /** @type {(() => void) | undefined} */
  let release;
  /** @type {import('../..').Generation | undefined} */
  let generation;
  let tokens = 0;
  try {
    // Before queueing, so a bad policy or sampling value is a 400 at once, never a wait then an error.
    generation = model.generate(request.prompt, { ...request.options, signal: controller.signal });
    const queued = performance.now();
    const slot = scheduler.tryAcquire(clientIdOf(req), controller.signal);
    if (!slot) {
      throw new HttpError(503, 'ERR_HTTP_QUEUE_FULL', `the queue is full (${scheduler.queued} requests waiting); try again later`);
    }
    if (request.stream) startEventStream(res);
    release = await slot;
    const started = performance.now();
    for await (const token of generation) {
      tokens++;
      if (request.stream) await sendEvent(res, { token: token.id, text: token.text });
    }
    const summary = generation.summary;
    if (!summary) throw new Error('the generation ended without a summary');
    const result = completionSummary(summary, { queueMs: started - queued, totalMs: performance.now() - received });
    if (request.stream) {
      await sendEvent(res, result);
      endEventStream(res);
    } else {
      sendJson(res, 200, { text: summary.text, token_ids: summary.tokenIds, ...result });
    }
    return {
      status: 200,
      outcome: 'finished',
      tokens,
      finishReason: result.finish_reason,
      policy: result.expert_usage.policy,
    };
  } catch (error) {
    // An abort with a reason (shutdown) says more than the library's generic ERR_DYNAMOE_ABORTED.
    const reason = controller.signal.reason;
    const reported = controller.signal.aborted && reason instanceof HttpError ? reason : error;
    if (!res.headersSent) throw reported;
    const { code, message } = describeError(reported);
    // What the steps that did run used: an ended generation still reports its expert usage.
    const partial = generation?.stats;
    const usage = partial && partial.tokens > 0 ? expertUsage(partial) : undefined;
    await sendEvent(res, { error: { code, message }, ...(usage ? { expert_usage: usage } : {}) });
    endEventStream(res);
    const outcome = controller.signal.aborted ? 'aborted' : 'failed';
    return { status: 200, outcome, tokens, error: code, ...(usage ? { policy: usage.policy } : {}) };
  } finally {
    release?.();
    controllers.delete(controller);
    res.off('close', onClose);
  }
}

module.exports = { handleCompletion };
