// DeepSeek-V2 GGUFs (MLA) against llama.cpp (node-llama-cpp's CPU build under bench/peers): the same file's logits
// from both runtimes and the float64 reference, for both kv_b layouts, both query forms and the V2/V3 routers.
// node-llama-cpp is an ES module jest cannot import, so this is a script, not a test; it says so and exits 0 when the
// peer is missing.
// Run: npm run bench:peers && npm run build && node dist/bench/llama-cpp-mla-logits.js
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel } from '../lib';
import { makeTinyDeepseekV2, TinyMlaOptions, writeDeepseekGguf } from '../test/mla-fixtures';
import { maxRelativeError } from '../test/reference/layer';
import { refMlaForward } from '../test/reference/mla-model';
import { argmaxRows, openLlamaCpp } from './llama-cpp-logits-runner';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 42, 99, 150, 2];

// [name, model, split kv_b, why llama.cpp is not held to the reference (it is otherwise, within 1e-3)]
const CASES: Array<[string, TinyMlaOptions, boolean, string?]> = [
  ['q_lora_rank 32, split attn_k_b/attn_v_b', { qLoraRank: 32 }, true],
  ['q_lora_rank 32, whole attn_kv_b', { qLoraRank: 32 }, false],
  ['one attn_q, split attn_k_b/attn_v_b', {}, true],
  ['one attn_q, whole attn_kv_b', {}, false],
  // llama.cpp's build_moe_ffn ranks expert groups by their top-2 sum for every architecture, V2's HF gate by the max
  // (llama.cpp's logits here are within 7e-4 of the reference with top-2-sum groups).
  ['V2 group_limited_greedy router', { qLoraRank: 32, routing: 'group_limited_greedy' }, true, 'llama.cpp ranks groups by top-2 sum, HF V2 by max'],
  ['V3 noaux_tc router (sigmoid, exp_probs_b, groups)', { qLoraRank: 32, routing: 'noaux_tc' }, true],
];


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
    for (const [name, options, split, differs] of CASES) {
      const model = makeTinyDeepseekV2(12, options);
      const file = path.join(dir, `${name.replace(/\W+/g, '-')}.gguf`);
      await writeDeepseekGguf(file, model, 'f32', split);
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
