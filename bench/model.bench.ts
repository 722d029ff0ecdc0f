// Whole-model benchmark: prefill and decode tokens/s of dynamoe and of llama.cpp (node-llama-cpp's CPU build) on
// the same Mixtral-style GGUF file, written by the bench in f32 and in bf16 and quantized to Q8_0, Q4_K_M and
// MXFP4_MOE by llama.cpp's own quantizer (4 MoE layers, hidden 1024, 8 query / 2 key-value heads, 8 experts of
// ffn 2816, top-2). BENCH_WEIGHTS=bf16,Q4_K_M picks rows. Each round runs a 256-token prefill then 64 decode steps in
// each runtime, the runtimes taking turns; medians over the rounds. dynamoe also runs top-p 0.4 on the same model,
// and top-k:2 on quantized files with the other setQuantActivations mode (the exact 'f32' path when 'q8' is the default).
// Run: npm run bench:peers && npm run bench:model
// `npm run bench:model -- --device cuda` runs the GPU bench instead (bench/gpu-model-bench.ts: full-size Mixtral-like
// and Qwen3-30B-A3B-like models against transformers and llama.cpp's CUDA build).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cpuInfo, loadModel, setQuantActivations } from '../lib';
import type { QuantActivations } from '../lib';
import { measureRoofline } from '../lib/backend/internals';
import { openGguf } from '../lib/formats/gguf';
import { llamaCppUnavailable, QuantizedFileType, runQuantTool } from '../test/quant-fixtures';
import { FileDtype } from '../test/model-fixtures';
import { runGpuModelBench } from './gpu-model-bench';
import { BENCH_MODEL, writeBenchModelGguf } from './mixtral-model';
import { EvaluateItem, NodeLlamaCpp } from './node-llama-cpp-api';
import { importPeer } from './peer-loader';
import { quantile, timeMs } from './timing';

const { layers: LAYERS, hidden: HIDDEN, ffn: FFN, experts: EXPERTS, kvHeads: KV_HEADS } = BENCH_MODEL;
const PROMPT = 256;
const DECODE = 64;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
// The goals against llama.cpp: float files, and the quantized ones (issue figures).
const GOALS = { prefill: 2, decode: 1.1 };
const QUANTIZED_GOALS = { prefill: 1.5, decode: 1.2 };

/** One runtime on the model: a prefill of the prompt from an empty context, then decode steps after it. */
interface Runner {
  name: string;
  /** Milliseconds of the prefill and of all DECODE steps. */
  run(): Promise<{ prefillMs: number; decodeMs: number }>;
  release(): Promise<void>;
}

// Token ids past the tiny vocabulary's special tokens; the same sequence in both runtimes.
const PROMPT_IDS = Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 37) % 250));
const DECODE_IDS = Array.from({ length: DECODE }, (_, i) => 3 + ((i * 53 + 7) % 250));

// `activations`: run with that quantized-activation setting (setQuantActivations), restoring the default after.
async function dynamoeRunner(file: string, policy: string, activations?: QuantActivations): Promise<Runner> {
  const model = await loadModel(file);
  const policies = model.policies(policy);
  const usual = cpuInfo().quantActivations;
  return {
    name: `dynamoe ${policy}${activations ? ` ${activations} activations` : ''}`,
    async run() {
      const session = model.createSession(PROMPT + DECODE);
      if (activations) setQuantActivations(activations);
      try {
        // lastRowLogits: only the last position's logits, as a generator needs (llama.cpp is asked the same).
        const prefillMs = await timeMs(() => model.step(session, Int32Array.from(PROMPT_IDS), policies, true, false));
        const decodeMs = await timeMs(async () => {
          for (const id of DECODE_IDS) await model.step(session, Int32Array.of(id), policies, true, false);
        });
        return { prefillMs, decodeMs };
      } finally {
        session.dispose();
        setQuantActivations(usual);
      }
    },
    async release() {
      model.dispose();
    },
  };
}

async function llamaRunner(file: string, threads: number): Promise<Runner | { missing: string }> {
  const peer = await importPeer<NodeLlamaCpp>('node-llama-cpp');
  if ('missing' in peer) return peer;
  const llama = await peer.module.getLlama({ gpu: false, build: 'never', logLevel: peer.module.LlamaLogLevel.error });
  // useMmap false: this VM pages out cold file-backed pages, which would stall the first runs (FACTS.md).
  const model = await llama.loadModel({ modelPath: file, useMmap: false });
  const context = await model.createContext({ contextSize: PROMPT + DECODE + 8, batchSize: PROMPT, threads });
  const sequence = context.getSequence();
  const output = { generateNext: { logits: true as const } };
  return {
    name: 'llama.cpp top-k:2',
    async run() {
      await sequence.clearHistory();
      const prompt: EvaluateItem[] = PROMPT_IDS.map((id, i) => (i === PROMPT - 1 ? [id, output] : id));
      const prefillMs = await timeMs(() => sequence.controlledEvaluate(prompt));
      const decodeMs = await timeMs(async () => {
        for (const id of DECODE_IDS) await sequence.controlledEvaluate([[id, output]]);
      });
      return { prefillMs, decodeMs };
    },
    async release() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

// The rows: the model written in f32 and bf16, and quantized from bf16 by llama.cpp's own quantizer.
type Variant = FileDtype | QuantizedFileType;
const QUANTIZED: readonly QuantizedFileType[] = ['Q8_0', 'Q4_K_M', 'MXFP4_MOE'];

// Writes the variant's file; null when it needs llama.cpp's quantizer and that is not installed.
async function writeVariant(variant: Variant, dir: string): Promise<string | null> {
  const file = path.join(dir, `mixtral-${variant}.gguf`);
  if (variant === 'f32' || variant === 'bf16' || variant === 'f16') {
    await writeBenchModelGguf(file, variant);
    return file;
  }
  if (llamaCppUnavailable() !== null) return null;
  const source = path.join(dir, 'mixtral-bf16-source.gguf');
  await writeBenchModelGguf(source, 'bf16');
  runQuantTool('quantize-gguf.py', [source, file, variant]);
  fs.rmSync(source);
  return file;
}

// Bytes one decode token reads: every weight but the experts, and the experts its top-2 routing picks.
async function decodeBytes(file: string): Promise<number> {
  const gguf = await openGguf(file);
  let bytes = 0;
  for (const info of gguf.tensors.values()) {
    bytes += info.name.includes('_exps.') ? (info.byteLength * 2) / EXPERTS : info.byteLength;
  }
  await gguf.close();
  return bytes;
}

async function benchDtype(dtype: Variant, dir: string, threads: number, readGBps: number): Promise<string[]> {
  const file = await writeVariant(dtype, dir);
  if (file === null) return [`| ${dtype} | (needs llama.cpp's quantizer: npm run bench:peers) | | |`];
  const bytesPerToken = await decodeBytes(file);
  const runners: Runner[] = [await dynamoeRunner(file, 'top-k:2'), await dynamoeRunner(file, 'top-p:0.4')];
  // Quantized files: also the exact f32 path (each block decoded to f32, f32 activations), interleaved with the rest.
  const other: QuantActivations = cpuInfo().quantActivations === 'q8' ? 'f32' : 'q8';
  if ((QUANTIZED as readonly string[]).includes(dtype)) runners.push(await dynamoeRunner(file, 'top-k:2', other));
  const llama = await llamaRunner(file, threads);
  if ('missing' in llama) console.log(`llama.cpp: ${llama.missing}`);
  else runners.push(llama);
  fs.rmSync(file);
  const times = runners.map(() => ({ prefill: [] as number[], decode: [] as number[] }));
  for (let round = 0; round <= ROUNDS; round++) {
    // Round 0 warms every runtime up and is not counted; later rounds rotate who goes first.
    for (let i = 0; i < runners.length; i++) {
      const r = (i + round) % runners.length;
      const { prefillMs, decodeMs } = await runners[r].run();
      if (round > 0) {
        times[r].prefill.push(prefillMs);
        times[r].decode.push(decodeMs);
      }
    }
  }
  const rates = times.map((t) => ({ prefill: (PROMPT * 1000) / quantile(t.prefill, 0.5), decode: (DECODE * 1000) / quantile(t.decode, 0.5) }));
  const lines = runners.map((runner, r) => {
    const ratio = (key: 'prefill' | 'decode') => (r === 0 || runner === llama ? '' : ` (${(rates[r][key] / rates[0][key]).toFixed(2)}x top-k:2)`);
    // Top-2 rows read two experts a layer per token; top-p rows fewer, so their GB/s is not shown.
    const gbps = (rates[r].decode * bytesPerToken) / 1e9;
    const bandwidth = runner.name.includes('top-k:2') ? `${gbps.toFixed(1)} GB/s, ${((100 * gbps) / readGBps).toFixed(0)}% of read` : '';
    return `| ${dtype} | ${runner.name} | ${rates[r].prefill.toFixed(0)}${ratio('prefill')} | ${rates[r].decode.toFixed(1)}${ratio('decode')} | ${bandwidth} |`;
  });
  if (!('missing' in llama)) {
    const last = rates.length - 1;
    const prefill = rates[0].prefill / rates[last].prefill;
    const decode = rates[0].decode / rates[last].decode;
    const goals = (QUANTIZED as readonly string[]).includes(dtype) ? QUANTIZED_GOALS : GOALS;
    lines.push(
      `| ${dtype} | **dynamoe top-k:2 / llama.cpp** | **${prefill.toFixed(2)}x** (goal ${goals.prefill}x: ` +
        `${prefill >= goals.prefill ? 'met' : 'not met'}) | **${decode.toFixed(2)}x** (goal ${goals.decode}x: ` +
        `${decode >= goals.decode ? 'met' : 'not met'}) | |`,
    );
  }
  for (const runner of runners) await runner.release();
  return lines;
}

async function main(): Promise<void> {
  const { threads, isa } = cpuInfo();
  console.log(
    `whole model: Mixtral-style, ${LAYERS} MoE layers, hidden ${HIDDEN}, ${HIDDEN / 128}/${KV_HEADS} heads, ` +
      `${EXPERTS} experts x ffn ${FFN}; prefill ${PROMPT} tokens then ${DECODE} decode steps; ${threads} threads, ` +
      `${isa} kernels; medians of ${ROUNDS} interleaved rounds (tokens/s, higher is better)`,
  );
  const { readGBps } = await measureRoofline();
  console.log(`read bandwidth (roofline probe): ${readGBps.toFixed(1)} GB/s`);
  // Weight reads assume two distinct experts a layer per decode token; over 100% means caches served part of them.
  console.log('| weights | runtime | prefill tokens/s | decode tokens/s | decode weight reads (est.) |');
  console.log('|---|---|---|---|---|');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-model-bench-'));
  const variants = (process.env.BENCH_WEIGHTS?.split(',') ?? ['f32', 'bf16', ...QUANTIZED]) as Variant[];
  try {
    for (const dtype of variants) {
      for (const line of await benchDtype(dtype, dir, threads, readGBps)) console.log(line);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`peak RSS of this process (both runtimes, one dtype at a time): ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

// `--device cuda`: the GPU bench. `--suite gpu --device cpu` runs the GPU bench's flow on the CPU (with
// BENCH_GPU_SHAPES=tiny: a quick check of the bench itself). No flag: the CPU bench above, as before.
function option(name: string): string | undefined {
  const args = process.argv.slice(2);
  const at = args.indexOf(name);
  if (at >= 0) return args[at + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

const device = option('--device');
if (device !== undefined && device !== 'cuda' && device !== 'cpu') {
  throw new Error(`--device must be cpu or cuda, got ${device}`);
}
const gpuSuite = device === 'cuda' || option('--suite') === 'gpu';

(gpuSuite ? runGpuModelBench(device === 'cuda' ? 'cuda' : 'cpu') : main()).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
