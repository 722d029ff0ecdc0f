// The demo behind `npm start`: the shipped trained MoE (or, with --synthetic, a seeded random Mixtral-style one)
// generating text with top-2 and with top-p routing, showing how many experts each token used and what that did
// to prefill and decode speed.
import * as path from 'path';
import { cpuInfo } from '../backend/cpu-settings';
import { DType } from '../dtype';
import { WritableQuantType } from '../formats/quant-types';
import { ProgressCallback } from '../model/build-graph';
import { loadModel } from '../model/load-model';
import { GenerationSummary, Model } from '../model/model';
import { RoutingStats } from '../model/routing-stats';
import { createSyntheticModel, SYNTHETIC_DEFAULTS } from '../model/synthetic-model';
import { PolicyOption } from '../policy/per-layer';
import { shippedModelDir } from './shipped-model';

/** Demo settings (the CLI's flags). */
export interface DemoOptions {
  /** A trained checkpoint folder to run (default: the shipped model); ignored when `synthetic` is set. */
  model: string;
  /** Run a seeded random model of the shape below instead of the checkpoint. */
  synthetic: boolean;
  /** Synthetic model shape (see createSyntheticModel). */
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  experts: number;
  ffn: number;
  dtype: DType | WritableQuantType;
  /** Weight seed. */
  seed: number;
  /** Routing policies compared; each is one policy for all layers, or one per MoE layer. */
  policies: PolicyOption[];
  /** Tokens generated (greedily) per policy. */
  tokens: number;
  /** The prompt every policy continues. */
  prompt: string;
  /** Timed generations per policy; the median time is shown. */
  repeats: number;
}

/** The settings `npm start` uses. */
export const DEFAULT_DEMO: DemoOptions = {
  model: shippedModelDir(),
  synthetic: false,
  layers: SYNTHETIC_DEFAULTS.layers,
  hidden: SYNTHETIC_DEFAULTS.hidden,
  heads: SYNTHETIC_DEFAULTS.heads,
  kvHeads: SYNTHETIC_DEFAULTS.kvHeads,
  experts: SYNTHETIC_DEFAULTS.experts,
  ffn: SYNTHETIC_DEFAULTS.ffn,
  dtype: 'f32',
  seed: SYNTHETIC_DEFAULTS.seed,
  policies: [
    { kind: 'top-k', k: 2 },
    { kind: 'top-p', p: 0.4 },
  ],
  tokens: 40,
  // The shipped model learnt English from the King James Bible: a prompt in its style.
  prompt: 'And the LORD said unto Moses,',
  repeats: 3,
};

/** What one policy did. */
export interface DemoPolicyResult {
  policy: string;
  promptTokens: number;
  /** Tokens generated (fewer than asked only when the model emitted EOS). */
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Mean experts per token over the prompt and the generated tokens, all MoE layers. */
  expertsPerToken: number;
  expertsPerTokenByLayer: number[];
  /** Routed (token, expert) pairs over all layers. */
  routedPairs: number;
  tokenIds: number[];
  text: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

/** JSON-escaped text, cut at `max` characters (random weights produce arbitrary bytes). */
function shortText(text: string, max: number): string {
  const chars = Array.from(text);
  return JSON.stringify(chars.length > max ? `${chars.slice(0, max).join('')}...` : text);
}

/** Loads the checkpoint, or builds the synthetic model, and prints what it is and how long that took. */
async function openDemoModel(options: DemoOptions, print: (line: string) => void, onProgress?: ProgressCallback): Promise<Model> {
  const { layers, hidden, heads, kvHeads, experts, ffn, dtype } = options;
  const cpu = cpuInfo();
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(2);
  if (options.synthetic) {
    print(
      `dynamoe demo: synthetic Mixtral-style MoE (${layers} layers, hidden ${hidden}, ${heads}/${kvHeads} heads, ` +
        `${experts} experts x ffn ${ffn}, ${dtype}), ${cpu.threads} threads, ${cpu.isa} kernels`,
    );
    const model = await createSyntheticModel({ ...options, onProgress });
    const mib = model.info.weightBytes / 2 ** 20;
    print(`built seeded weights (seed ${options.seed}, ${mib.toFixed(1)} MiB packed) in ${seconds()} s`);
    return model;
  }
  const model = await loadModel(options.model, { dtype, onProgress });
  const spec = model.spec;
  const moe = spec.layers.find((l) => l.kind === 'moe');
  const shape = moe?.kind === 'moe' ? `, ${moe.experts} experts x ffn ${moe.ffn}` : '';
  print(
    `dynamoe demo: ${path.basename(options.model)}, a trained ${spec.architecture} model (${spec.layers.length} layers, ` +
      `hidden ${spec.hidden}, ${spec.heads}/${spec.kvHeads} heads${shape}, ${model.info.dtype}), ${cpu.threads} threads, ` +
      `${cpu.isa} kernels`,
  );
  print(`loaded ${(model.info.weightBytes / 2 ** 20).toFixed(1)} MiB of weights in ${seconds()} s; trained policy ${model.info.defaultPolicy[0]}`);
  return model;
}

/**
 * Opens the demo model, generates `tokens` tokens greedily with each policy (`repeats` timed runs, median time)
 * and prints per-policy figures through `print`. `onProgress` follows the weight packing.
 */
export async function runDemo(
  options: DemoOptions,
  print: (line: string) => void,
  onProgress?: ProgressCallback,
): Promise<DemoPolicyResult[]> {
  const model = await openDemoModel(options, print, onProgress);
  const results: DemoPolicyResult[] = [];
  try {
    const prompt = model.tokenizer.encode(options.prompt);
    print(`prompt ${shortText(options.prompt, 100)} (${prompt.length} tokens)`);
    print(`${options.tokens} tokens generated greedily per policy; times: median of ${options.repeats} run(s)`);
    // Warm-up: the first generation pays for JIT compilation and thread start-up.
    await drain(model.generate(prompt, { maxTokens: 2 }));
    // Runs alternate between policies, so that load from elsewhere on the machine hits every policy alike.
    const runs: GenerationSummary[][] = options.policies.map(() => []);
    for (let r = 0; r < options.repeats; r++) {
      for (const [i, policy] of options.policies.entries()) {
        const generation = model.generate(prompt, { maxTokens: options.tokens, policy });
        await drain(generation);
        if (generation.summary) runs[i].push(generation.summary);
      }
    }
    runs.forEach((summaries) => results.push(policyResult(summaries)));
  } finally {
    model.dispose();
  }
  // A trained model's text is worth reading whole; random weights' is shown only as a short sample.
  printResults(results, print, options.synthetic ? 60 : 400);
  return results;
}

function policyResult(runs: GenerationSummary[]): DemoPolicyResult {
  const summary = runs[0]; // every run routes and generates the same: only the times differ
  const prefillMs = median(runs.map((s) => s.prefillMs));
  const decodeMs = median(runs.map((s) => s.decodeMs));
  const decodeSteps = Math.max(0, summary.tokenIds.length - 1); // the prefill step yields the first token
  return {
    policy: summary.stats.policy,
    promptTokens: summary.promptTokens,
    generatedTokens: summary.tokenIds.length,
    prefillMs,
    decodeMs,
    prefillTokensPerSecond: (summary.promptTokens * 1000) / prefillMs,
    decodeTokensPerSecond: decodeSteps > 0 ? (decodeSteps * 1000) / decodeMs : 0,
    expertsPerToken: summary.stats.expertsPerToken,
    expertsPerTokenByLayer: summary.stats.layers.map((l) => l.expertsPerToken),
    routedPairs: routedPairs(summary.stats),
    tokenIds: summary.tokenIds,
    text: summary.text,
  };
}

async function drain(tokens: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of tokens); // the summary is what the demo reads
}

function routedPairs(stats: RoutingStats): number {
  return stats.layers.reduce((sum, l) => sum + l.expertsPerToken * l.tokens, 0);
}

function printResults(results: DemoPolicyResult[], print: (line: string) => void, textChars: number): void {
  for (const r of results) {
    const decodeSteps = Math.max(0, r.generatedTokens - 1);
    print('');
    print(`policy ${r.policy}`);
    const rate = (tokens: number, ms: number, perSecond: number) =>
      `${tokens} tokens in ${ms.toFixed(1)} ms = ${perSecond.toFixed(0)} tokens/s`;
    print(`  prefill        ${rate(r.promptTokens, r.prefillMs, r.prefillTokensPerSecond)}`);
    print(`  decode         ${rate(decodeSteps, r.decodeMs, r.decodeTokensPerSecond)}`);
    print(`  experts/token  ${r.expertsPerToken.toFixed(2)} mean (prompt + generated)`);
    print(`  per layer      ${r.expertsPerTokenByLayer.map((e) => e.toFixed(2)).join(' ')}`);
    print(`  token ids      ${r.tokenIds.join(' ')}`);
    print(`  text           ${shortText(r.text, textChars)}`);
  }
  if (results.length < 2) return;
  const [base, ...others] = results;
  print('');
  for (const other of others) {
    print(
      `${other.policy} vs ${base.policy}: expert pairs ${(other.routedPairs / base.routedPairs).toFixed(2)}x ` +
        `(${other.expertsPerToken.toFixed(2)} vs ${base.expertsPerToken.toFixed(2)} experts/token), ` +
        `prefill time ${(base.prefillTokensPerSecond / other.prefillTokensPerSecond).toFixed(2)}x, ` +
        `decode time per token ${(base.decodeTokensPerSecond / other.decodeTokensPerSecond).toFixed(2)}x`,
    );
  }
}
