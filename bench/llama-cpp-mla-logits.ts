// DeepSeek-V2 GGUFs (MLA) against llama.cpp (node-llama-cpp's CPU build under bench/peers): the same file's logits
// from both runtimes and the float64 reference, for both kv_b layouts, both query forms and the V2/V3 routers.
// node-llama-cpp is an ES module jest cannot import, so this is a script, not a test; it says so and exits 0 when the
// peer is missing.
// Run: npm run bench:peers && npm run build && node dist/bench/llama-cpp-mla-logits.js
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel } from '../lib';
import type { GgufTypedValue } from '../lib/formats/gguf';
import { makeTinyDeepseekV2, TinyMlaModel, TinyMlaOptions, writeDeepseekGguf } from '../test/mla-fixtures';
import { maxRelativeError } from '../test/reference/layer';
import { refMlaForward } from '../test/reference/mla-model';
import { argmaxRows, openLlamaCpp } from './llama-cpp-logits-runner';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 42, 99, 150, 2];

/** YaRN as a deepseek2 GGUF keeps it: the checkpoint's mscale / mscale_all_dim, and llama.cpp's log multiplier. */
interface GgufYarn {
  mscale: number;
  mscaleAllDim: number;
  logMultiplier?: number;
}

// [name, model, split kv_b, why llama.cpp is not held to the reference (it is otherwise, within 1e-3), YaRN]
const CASES: Array<[string, TinyMlaOptions, boolean, string?, GgufYarn?]> = [
  ['q_lora_rank 32, split attn_k_b/attn_v_b', { qLoraRank: 32 }, true],
  ['q_lora_rank 32, whole attn_kv_b', { qLoraRank: 32 }, false],
  ['one attn_q, split attn_k_b/attn_v_b', {}, true],
  ['one attn_q, whole attn_kv_b', {}, false],
  // llama.cpp's build_moe_ffn ranks expert groups by their top-2 sum for every architecture, V2's HF gate by the max
  // (llama.cpp's logits here are within 7e-4 of the reference with top-2-sum groups).
  ['V2 group_limited_greedy router', { qLoraRank: 32, routing: 'group_limited_greedy' }, true, 'llama.cpp ranks groups by top-2 sum, HF V2 by max'],
  ['V3 noaux_tc router (sigmoid, exp_probs_b, groups)', { qLoraRank: 32, routing: 'noaux_tc' }, true],
  // YaRN factor 40 over 4096 positions, as the released checkpoints: V2's mscale = mscale_all_dim = 0.707, V3's 1.
  ['YaRN, V2\'s yarn_log_multiplier 0.0707', { qLoraRank: 32, ropeDim: 16 }, true, undefined, { mscale: 0.707, mscaleAllDim: 0.707, logMultiplier: 0.0707 }],
  ['YaRN, V3\'s yarn_log_multiplier 0.1', { qLoraRank: 32, ropeDim: 16 }, true, undefined, { mscale: 1, mscaleAllDim: 1, logMultiplier: 0.1 }],
];

/** The GGUF metadata of `yarn` (rope.scaling.*, and the log multiplier when it has one). */
function yarnKeys(yarn: GgufYarn): (metadata: Array<[string, GgufTypedValue]>) => void {
  return (metadata) => {
    metadata.push(
      ['deepseek2.rope.scaling.type', { type: 'string', value: 'yarn' }],
      ['deepseek2.rope.scaling.factor', { type: 'f32', value: 40 }],
      ['deepseek2.rope.scaling.original_context_length', { type: 'u32', value: 4096 }],
    );
    if (yarn.logMultiplier !== undefined) {
      metadata.push(['deepseek2.rope.scaling.yarn_log_multiplier', { type: 'f32', value: yarn.logMultiplier }]);
    }
  };
}


async function main(): Promise<void> {
  const llama = await openLlamaCpp();
  if ('missing' in llama) {
    console.log(`SKIPPED: llama.cpp comparison of DeepSeek-V2 GGUFs: ${llama.missing}`);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-mla-llama-'));
  let failed = false;
  try {
    console.log('| deepseek2 GGUF (f32) | dynamoe vs float64 | llama.cpp vs float64 | dynamoe vs llama.cpp | greedy next-token agreement |');
    console.log('|---|---|---|---|---|');
    for (const [name, options, split, differs, yarn] of CASES) {
      const base = makeTinyDeepseekV2(12, options);
      const model: TinyMlaModel = yarn
        ? { ...base, yarn: { factor: 40, originalContext: 4096, betaFast: 32, betaSlow: 1, mscale: yarn.mscale, mscaleAllDim: yarn.mscaleAllDim } }
        : base;
      const file = path.join(dir, `${name.replace(/\W+/g, '-')}.gguf`);
      await writeDeepseekGguf(file, model, 'f32', split, yarn ? yarnKeys(yarn) : undefined);
      const ours = await loadModel(file);
      const { logits } = await ours.forward(TOKENS);
      ours.dispose();
      const theirs = await llama.logitsOf(file, TOKENS, model.vocab);
      const reference = refMlaForward(model, TOKENS).logits;
      const a = argmaxRows(logits, model.vocab);
      const b = argmaxRows(theirs, model.vocab);
      const agree = a.filter((id, i) => id === b[i]).length;
      const between = maxRelativeError(logits, theirs);
      failed ||= !differs && between > 1e-3;
      console.log(`| ${name}${differs ? ` (${differs})` : ''} | ${maxRelativeError(logits, reference).toExponential(2)} | ` +
        `${maxRelativeError(theirs, reference).toExponential(2)} | ${between.toExponential(2)} | ${agree}/${a.length} |`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await llama.dispose();
  }
  if (failed) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
