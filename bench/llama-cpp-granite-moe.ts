// Granite MoE logits of dynamoe against llama.cpp (node-llama-cpp's CPU binary) on the same tiny GGUF files
// (arch 'granitemoe'): non-trivial multipliers, tied and untied embeddings, and the shared MLP with q/k/v/o biases.
// Run: npm run bench:peers && npm run build && node dist/bench/llama-cpp-granite-moe.js
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel } from '../lib';
import { makeTinyGranite, TinyGraniteOptions, writeGraniteGguf } from '../test/granite-moe-fixtures';
import { refGraniteForward } from '../test/reference/granite-moe';
import { maxRelativeError } from '../test/reference/layer';
import { argmaxRows, openLlamaCpp } from './llama-cpp-logits-runner';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 42, 99, 150, 2, 77, 31, 8, 140];


async function main(): Promise<void> {
  const llama = await openLlamaCpp();
  if ('missing' in llama) {
    console.log(`skipped: ${llama.missing}`);
    return;
  }
  const theirsOn = (file: string, vocab: number) => llama.logitsOf(file, TOKENS, vocab);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-granite-llama-'));
  const cases: Array<[string, TinyGraniteOptions]> = [
    ['untied', {}],
    ['tied embeddings', { tied: true }],
    ['shared MLP, q/k/v/o biases', { sharedFfn: 40, attentionBias: true }],
  ];
  try {
    console.log('| tiny Granite MoE GGUF (multipliers 12, 0.22, 1/64, 8) | dynamoe vs llama.cpp | dynamoe vs float64 | llama.cpp vs float64 | greedy agreement |');
    console.log('|---|---|---|---|---|');
    for (const [label, options] of cases) {
      const tiny = makeTinyGranite(11, options);
      const file = path.join(dir, `granite-${label.replace(/[^a-z]+/g, '-')}.gguf`);
      await writeGraniteGguf(file, tiny);
      const ours = await loadModel(file);
      const { logits } = await ours.forward(TOKENS);
      ours.dispose();
      const theirs = await theirsOn(file, tiny.vocab);
      const reference = refGraniteForward(tiny, TOKENS);
      const a = argmaxRows(logits, tiny.vocab);
      const b = argmaxRows(theirs, tiny.vocab);
      const agree = a.filter((id, i) => id === b[i]).length;
      console.log(
        `| ${label} | ${maxRelativeError(logits, theirs).toExponential(2)} | ` +
          `${maxRelativeError(logits, reference).toExponential(2)} | ${maxRelativeError(theirs, reference).toExponential(2)} | ` +
          `${agree}/${TOKENS.length} |`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
