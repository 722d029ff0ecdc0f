// Logits of dynamoe against llama.cpp (node-llama-cpp's CPU binary) on the same GGUF files: f32/f16/bf16 files of
// every GGUF architecture, then files quantized by llama.cpp's own quantizer, where each runtime's logits are also
// held to its own on the f32 file the quantized one came from.
// Run: npm run bench:peers && npm run build && node dist/bench/llama-cpp-logits.js
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel } from '../lib';
import { ArchName, FileDtype, GGUF_ARCHITECTURES, makeTinyModel, writeGgufCheckpoint } from '../test/model-fixtures';
import { maxRelativeError } from '../test/reference/layer';
import { argmaxRows, openLlamaCpp } from './llama-cpp-logits-runner';
import { makeQuantizedGguf, QuantizedFileType, wideTinyModel } from '../test/quant-fixtures';

const QUANTIZED: readonly QuantizedFileType[] = ['Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M', 'Q4_0', 'IQ4_XS', 'MXFP4_MOE', 'Q3_K_M', 'Q2_K'];

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 42, 99, 150, 2];


async function main(): Promise<void> {
  const llama = await openLlamaCpp();
  if ('missing' in llama) {
    console.log(`skipped: ${llama.missing}`);
    return;
  }
  const oursOn = async (file: string) => {
    const ours = await loadModel(file);
    const { logits } = await ours.forward(TOKENS);
    ours.dispose();
    return logits;
  };
  const theirsOn = (file: string, vocab: number) => llama.logitsOf(file, TOKENS, vocab);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-llama-'));
  try {
    console.log('| GGUF | dtype | tokens | max rel. error of logits | greedy next-token agreement |');
    console.log('|---|---|---|---|---|');
    for (const [arch, ggufArch] of Object.entries(GGUF_ARCHITECTURES) as [ArchName, string][]) {
    for (const dtype of ['f32', 'f16', 'bf16'] as FileDtype[]) {
      const tiny = makeTinyModel(arch, 21, { allMoe: true });
      const file = path.join(dir, `${arch}-${dtype}.gguf`);
      await writeGgufCheckpoint(file, tiny, dtype);

      const logits = await oursOn(file);
      const theirs = await theirsOn(file, tiny.vocab);

      const maxRelative = maxRelativeError(logits, theirs);
      const a = argmaxRows(logits, tiny.vocab);
      const b = argmaxRows(theirs, tiny.vocab);
      const agree = a.filter((id, i) => id === b[i]).length;
      const moe = tiny.layers.filter((l) => l.ffn.kind === 'moe').length;
      console.log(`| ${ggufArch} (tiny ${arch}, ${tiny.layers.length} layers, ${moe} MoE) | ${dtype} | ${TOKENS.length} | ${maxRelative.toExponential(2)} | ${agree}/${TOKENS.length} |`);
    }
    }
    // Quantized files of a model whose rows are whole k-quant blocks (hidden and ffn 256).
    console.log('');
    console.log('| quantized (llama.cpp quantizer) | dynamoe vs llama.cpp, same file | dynamoe vs its f32 | llama.cpp vs its f32 | greedy agreement |');
    console.log('|---|---|---|---|---|');
    const wide = wideTinyModel('mixtral', 21);
    const f32File = path.join(dir, 'wide-f32.gguf');
    await writeGgufCheckpoint(f32File, wide, 'f32');
    const oursF32 = await oursOn(f32File);
    const theirsF32 = await theirsOn(f32File, wide.vocab);
    for (const fileType of QUANTIZED) {
      const file = await makeQuantizedGguf(dir, 'mixtral', fileType, 21);
      if (file === null) {
        console.log(`| ${fileType} | (needs python3 and the bench peers) | | | |`);
        continue;
      }
      const logits = await oursOn(file);
      const theirs = await theirsOn(file, wide.vocab);
      const a = argmaxRows(logits, wide.vocab);
      const agree = argmaxRows(theirs, wide.vocab).filter((id, i) => id === a[i]).length;
      console.log(
        `| ${fileType} | ${maxRelativeError(logits, theirs).toExponential(2)} | ${maxRelativeError(logits, oursF32).toExponential(2)} | ` +
          `${maxRelativeError(theirs, theirsF32).toExponential(2)} | ${agree}/${TOKENS.length} |`,
      );
    }
  } finally {
    await llama.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
