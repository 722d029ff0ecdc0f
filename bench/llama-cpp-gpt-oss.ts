// gpt-oss logits of dynamoe against llama.cpp (node-llama-cpp's CPU binary) on the same tiny GGUF files: f32
// experts and MXFP4 experts, with YaRN and without. llama.cpp rounds YaRN's ramp bounds to whole dims where the
// Hugging Face model (which dynamoe follows) does not, so the YaRN rows carry that difference too.
// Run: npm run bench:peers && npm run build && node dist/bench/llama-cpp-gpt-oss.js
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel } from '../lib';
import { makeTinyGptOss, useMxfp4Experts, writeGptOssGguf } from '../test/gpt-oss-fixtures';
import { refGptOssForward } from '../test/reference/gpt-oss';
import { maxRelativeError } from '../test/reference/layer';
import { dequantizeReference } from '../test/reference/quant-formats';
import { argmaxRows, openLlamaCpp } from './llama-cpp-logits-runner';

// Past the tiny model's sliding window of 5 several times over.
const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 42, 99, 150, 2, 77, 31, 8, 140];


async function main(): Promise<void> {
  const llama = await openLlamaCpp();
  if ('missing' in llama) {
    console.log(`skipped: ${llama.missing}`);
    return;
  }
  const theirsOn = (file: string, vocab: number) => llama.logitsOf(file, TOKENS, vocab);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-gpt-oss-llama-'));
  try {
    console.log('| tiny gpt-oss GGUF | dynamoe vs llama.cpp | dynamoe vs float64 | llama.cpp vs float64 | llama.cpp vs float64, YaRN ramp rounded | greedy agreement |');
    console.log('|---|---|---|---|---|---|');
    for (const experts of ['f32', 'mxfp4'] as const) {
      for (const yarn of [false, true]) {
        // llama.cpp's graph clamps the SwiGLU at 7; MXFP4 rows need an FFN of whole 32-blocks.
        const tiny = makeTinyGptOss(11, { yarn, limit: 7, ffn: 64 });
        const blocks = experts === 'mxfp4'
          ? useMxfp4Experts(tiny, 12, (b, rows, cols) => dequantizeReference('mxfp4', b, rows, cols))
          : undefined;
        const file = path.join(dir, `gpt-oss-${experts}-${yarn ? 'yarn' : 'plain'}.gguf`);
        await writeGptOssGguf(file, tiny, [], blocks);
        const ours = await loadModel(file);
        const { logits } = await ours.forward(TOKENS);
        ours.dispose();
        const theirs = await theirsOn(file, tiny.vocab);
        const reference = refGptOssForward(tiny, TOKENS);
        // llama.cpp's YaRN: the ramp's bounds floored and ceiled to whole dims.
        const rounded = refGptOssForward({ ...tiny, yarn: tiny.yarn && { ...tiny.yarn, truncate: true } }, TOKENS);
        const a = argmaxRows(logits, tiny.vocab);
        const b = argmaxRows(theirs, tiny.vocab);
        const agree = a.filter((id, i) => id === b[i]).length;
        console.log(
          `| ${experts} experts, ${yarn ? 'YaRN x8' : 'plain RoPE'} | ${maxRelativeError(logits, theirs).toExponential(2)} | ` +
            `${maxRelativeError(logits, reference).toExponential(2)} | ${maxRelativeError(theirs, reference).toExponential(2)} | ` +
            `${maxRelativeError(theirs, rounded).toExponential(2)} | ` +
            `${agree}/${TOKENS.length} |`,
        );
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
