// What a finished completion reports: finish reason, token counts, timings and the request's expert usage.
// @ts-check
'use strict';

/** The library's stop reasons under the names OpenAI-style clients expect ('eos' kept: it says the model ended). */
const FINISH_REASONS = { eos: 'eos', stop: 'stop', maxTokens: 'length' };

/** @param {number} ms */
function roundMs(ms) {
  return Math.round(ms * 1000) / 1000;
}

/**
 * Experts per token over the request (its prompt and the tokens it generated), overall and per MoE layer.
 * @param {import('../..').RoutingStats} stats
 */
function expertUsage(stats) {
  return {
    policy: stats.policy,
    experts_per_token: stats.expertsPerToken,
    routed_tokens: stats.tokens,
    layers: stats.layers.map((layer) => ({
      layer: layer.layer,
      policy: layer.policy,
      experts_per_token: layer.expertsPerToken,
      // histogram[n]: tokens that used n experts
      histogram: layer.histogram,
    })),
  };
}

/**
 * The final event of a stream (and the tail of a non-streamed body).
 * @param {import('../..').GenerationSummary} summary
 * @param {{ queueMs: number, totalMs: number }} times
 */
function completionSummary(summary, { queueMs, totalMs }) {
  const completionTokens = summary.tokenIds.length;
  return {
    finish_reason: FINISH_REASONS[summary.stopReason],
    usage: {
      prompt_tokens: summary.promptTokens,
      completion_tokens: completionTokens,
      total_tokens: summary.promptTokens + completionTokens,
    },
    timings: {
      queue_ms: roundMs(queueMs),
      prefill_ms: roundMs(summary.prefillMs),
      decode_ms: roundMs(summary.decodeMs),
      total_ms: roundMs(totalMs),
    },
    expert_usage: expertUsage(summary.stats),
  };
}

module.exports = { completionSummary, expertUsage };
