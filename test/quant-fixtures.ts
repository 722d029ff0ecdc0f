// Quantized GGUF fixtures made by llama.cpp's own quantizer (node-llama-cpp's CPU libraries under bench/peers, called
// from python3 through ctypes), and the tiny models they start from: every matrix row a whole number of 256-element
// k-quant super-blocks, so llama.cpp quantizes every matrix to the type asked for.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { RefDecoderLayer, RefFeedForward } from './reference/model';
import { Rng } from './reference/random';
import { ArchName, makeTinyModel, TinyModel, writeGgufCheckpoint } from './model-fixtures';

// The repository root: the first directory above this file with a package.json (this file also runs compiled, from
// dist/test/, for the benchmarks).
function repositoryRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/** node-llama-cpp's CPU build of llama.cpp (`npm run bench:peers`; absent on CI machines). */
export const LLAMA_CPP_LIB_DIR = path.join(
  repositoryRoot(), 'bench', 'peers', 'node_modules', '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64',
);
const TOOLS_DIR = path.join(repositoryRoot(), 'test', 'quant-tools');

/** Why llama.cpp's libraries cannot be called from here, or null when they can. */
export function llamaCppUnavailable(): string | null {
  if (!fs.existsSync(path.join(LLAMA_CPP_LIB_DIR, 'libggml-base.so'))) {
    return `llama.cpp's libraries are not at ${LLAMA_CPP_LIB_DIR} (run npm run bench:peers)`;
  }
  if (spawnSync('python3', ['--version']).status !== 0) return 'python3 is not on the PATH';
  return null;
}

/** Runs one of the python tools in test/quant-tools with llama.cpp's library directory first; throws on failure. */
export function runQuantTool(script: string, args: readonly string[]): void {
  const run = spawnSync('python3', [path.join(TOOLS_DIR, script), LLAMA_CPP_LIB_DIR, ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${script} failed (${run.status ?? run.signal}): ${run.stderr}`);
}

/** llama.cpp file types (enum llama_ftype names without LLAMA_FTYPE_MOSTLY_); quantize-gguf.py holds their ids. */
export type QuantizedFileType =
  | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q2_K' | 'Q3_K_M' | 'Q4_K_M' | 'Q5_K_M' | 'Q6_K' | 'IQ4_NL'
  | 'IQ4_XS' | 'MXFP4_MOE';

/** One k-quant super-block: the width of every matrix row of the wide models. */
export const SUPER_BLOCK = 256;

/**
 * The tiny model of `arch` (its layer kinds, routing policy, head count, q/k norms and biases) with hidden size, head
 * width x heads, and every feed-forward width equal to {@link SUPER_BLOCK}, and weights drawn afresh.
 */
export function wideTinyModel(arch: ArchName, seed: number): TinyModel {
  const template = makeTinyModel(arch, seed);
  const rng = new Rng(seed);
  const width = SUPER_BLOCK;
  const headDim = width / template.heads;
  const kvWidth = template.kvHeads * headDim;
  const matrix = (rows: number, cols: number, std = 1 / Math.sqrt(cols)) => rng.normalArray(rows * cols, std);
  const norm = (length: number) => rng.normalArray(length, 0.1, 1);
  const qkNormWidth = (full: number) => (template.qkNorm === 'per-head' ? headDim : full);
  const feedForward = (f: RefFeedForward): RefFeedForward => {
    if (f.kind === 'dense') return { kind: 'dense', ffn: width, gate: matrix(width, width), up: matrix(width, width), down: matrix(width, width) };
    const experts = () => Array.from({ length: f.experts }, () => matrix(width, width));
    return {
      kind: 'moe', experts: f.experts, ffn: width, policy: f.policy, router: matrix(f.experts, width, 2 / Math.sqrt(width)),
      ...(f.routerRule ? { routerRule: f.routerRule } : {}),
      gate: experts(), up: experts(), down: experts(),
      ...(f.shared ? { shared: { ffn: width, gate: matrix(width, width), up: matrix(width, width), down: matrix(width, width),
        ...(f.shared.gateWeight ? { gateWeight: matrix(1, width) } : {}) } } : {}),
    };
  };
  const layers: RefDecoderLayer[] = template.layers.map((l) => ({
    attnNorm: norm(width), q: matrix(width, width), k: matrix(kvWidth, width), v: matrix(kvWidth, width),
    o: matrix(width, width), mlpNorm: norm(width), ffn: feedForward(l.ffn),
    ...(l.qBias ? { qBias: matrix(1, width, 0.2), kBias: matrix(1, kvWidth, 0.2), vBias: matrix(1, kvWidth, 0.2) } : {}),
    ...(l.qNorm ? { qNorm: norm(qkNormWidth(width)), kNorm: norm(qkNormWidth(kvWidth)) } : {}),
  }));
  return {
    ...template,
    // The Hugging Face config is not written from these models (GGUF only); kept in step with the widths anyway.
    config: { ...template.config, hidden_size: width, head_dim: headDim, intermediate_size: width, moe_intermediate_size: width },
    hidden: width, headDim, embed: matrix(template.vocab, width, 1), finalNorm: norm(width),
    ...(template.lmHead ? { lmHead: matrix(template.vocab, width) } : {}),
    layers,
  };
}

/**
 * Writes {@link wideTinyModel}(arch, seed) as an f32 GGUF in `dir` and quantizes it with llama.cpp's
 * llama_model_quantize into `ftypeName`; returns the quantized file, or null when llama.cpp's libraries or python3
 * are missing.
 */
export async function makeQuantizedGguf(dir: string, arch: ArchName, ftypeName: QuantizedFileType, seed = 1): Promise<string | null> {
  if (llamaCppUnavailable() !== null) return null;
  const source = path.join(dir, `${arch}-${seed}-f32.gguf`);
  if (!fs.existsSync(source)) await writeGgufCheckpoint(source, wideTinyModel(arch, seed), 'f32');
  const target = path.join(dir, `${arch}-${seed}-${ftypeName}.gguf`);
  runQuantTool('quantize-gguf.py', [source, target, ftypeName]);
  return target;
}
