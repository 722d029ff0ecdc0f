// The whole-model bench on a GPU (`npm run bench:model -- --device cuda`): a Mixtral-like and a Qwen3-30B-A3B-like
// model (8 layers each, bf16, seeded synthetic weights written to safetensors and GGUF), prefill at 512, 2048 and
// 8192 tokens and batch-1 decode, the model's trained top-k and top-p 0.4, as tokens/s and as fractions of the GPU's
// limits, with peak GPU memory; against PyTorch + transformers on the same safetensors and llama.cpp's CUDA build
// (node-llama-cpp) on the same GGUF, in the same run. Goals are printed as measured ratios, never asserted.
// `--device cpu --suite gpu` with BENCH_GPU_SHAPES=tiny runs the same flow on the CPU at a tiny size (a check of the
// bench itself, not a measurement). BENCH_GPU_QUANT=q4_k_m,q8_0 (dynamoe quantize targets) adds a table per target:
// dynamoe and llama.cpp on the GGUF quantized from the bf16 one, GB/s counted on the quantized bytes.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { backendInfo, BackendInfo, cpuInfo, loadModel } from '../lib';
import { Device } from '../lib/device';
import { RoutingStatsAccumulator } from '../lib/model/routing-stats';
import { EvaluateItem, Llama, NodeLlamaCpp } from './node-llama-cpp-api';
import { importPeer } from './peer-loader';
import {
  GpuBenchShape,
  MIXTRAL_LIKE,
  QWEN3_MOE_LIKE,
  tinyShape,
  weightCounts,
  withLayers,
  writeSyntheticGguf,
  writeSyntheticHfDirectory,
} from './synthetic-moe-checkpoint';
import { quantile } from './timing';
import { quantizeGguf, QUANTIZE_TARGETS, QuantizeTarget } from '../lib/formats/quantize-gguf';

const env = process.env;
const PREFILL = (env.BENCH_GPU_PREFILL ?? '512,2048,8192').split(',').map(Number);
const DECODE = Number(env.BENCH_DECODE ?? 64);
const DECODE_PROMPT = Number(env.BENCH_DECODE_PROMPT ?? 512);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const TORCH_TIMEOUT_S = Number(env.BENCH_TORCH_TIMEOUT_S ?? 300);
const PEERS = new Set((env.BENCH_GPU_PEERS ?? 'torch,llama').split(',').filter(Boolean));
const QUANT_TARGETS = (env.BENCH_GPU_QUANT ?? '').split(',').filter(Boolean) as QuantizeTarget[];
const TOP_P = 'top-p:0.4';
// The issue's goals (printed as measured ratios).
const GOALS = { decodeOfBandwidth: 0.8, decodeVsLlama: 1.5, prefillVsLlama: 1.5, prefillVsTorch: 5 };

// Token ids: the same in every runtime (bench/torch-model-peer.py computes the same sequences).
const promptIds = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7919) % (vocab - 3)));
const decodeIds = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 104729 + 11) % (vocab - 3)));

/** Milliseconds of each prefill length and of all DECODE steps after a DECODE_PROMPT prefill, medians over rounds. */
interface Timings {
  prefillMs: Map<number, number>;
  decodeMs: number;
}

/** One row of the table: a runtime and policy on one model. */
interface Row {
  runtime: string;
  timings: Timings;
  /** Mean FFN experts per token of each prefill length, and of the decode steps (dynamoe's routing statistics). */
  expertsPerToken?: { prefill: Map<number, number>; decode: number };
  /** Peak GPU memory, bytes, and how it was read. */
  peakMemory?: { bytes: number; how: string };
  loadSeconds?: number;
  note?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// The GPU: its name, its ceilings, its memory in use.

/** Bytes in use on GPU 0 (nvidia-smi), or null without nvidia-smi. */
function gpuUsedBytes(): number | null {
  const r = spawnSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', '0'], { encoding: 'utf8' });
  const mib = Number(r.stdout?.trim());
  return r.status === 0 && Number.isFinite(mib) ? mib * 2 ** 20 : null;
}

function gpuName(): string {
  const name = backendInfo().gpu?.name;
  if (name) return name;
  const r = spawnSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader', '-i', '0'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'no GPU';
}

// backendInfo's free GPU memory (device-wide), when the binary reports it.
function cudaFreeBytes(): number | null {
  const free: BackendInfo['cudaFreeMemoryBytes'] = backendInfo().cudaFreeMemoryBytes;
  return typeof free === 'number' ? free : null;
}

/** The datasheet figures the fractions fall back to: dense bf16 TFLOP/s and HBM TB/s. */
function nominal(name: string): { tflops: number; tbps: number; what: string } | null {
  if (/H200/i.test(name)) return { tflops: 989, tbps: 4.8, what: 'H200 datasheet: 989 dense bf16 TFLOP/s, 4.8 TB/s HBM3e' };
  if (/H100.*PCIe/i.test(name)) return { tflops: 756, tbps: 2.0, what: 'H100 PCIe datasheet: 756 dense bf16 TFLOP/s, 2.0 TB/s' };
  if (/H100/i.test(name)) return { tflops: 989, tbps: 3.35, what: 'H100 SXM datasheet: 989 dense bf16 TFLOP/s, 3.35 TB/s HBM3' };
  if (/A100/i.test(name)) return { tflops: 312, tbps: 2.0, what: 'A100 datasheet: 312 dense bf16 TFLOP/s, 2.0 TB/s' };
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// PyTorch + transformers (bench/torch-model-peer.py).

function pythonWithTorch(): string | undefined {
  const candidates = env.DYNAMOE_BENCH_PYTHON ? [env.DYNAMOE_BENCH_PYTHON] : ['python3', '/usr/bin/python3'];
  return candidates.find((python) => spawnSync(python, ['-c', 'import torch, transformers'], { stdio: 'ignore' }).status === 0);
}

function torchScript(): string {
  // Next to this file in bench/, or two levels up from dist/bench/.
  const here = path.join(__dirname, 'torch-model-peer.py');
  return fs.existsSync(here) ? here : path.join(__dirname, '..', '..', 'bench', 'torch-model-peer.py');
}

/** Runs the peer script; its last stdout line is JSON. Its stderr (progress) passes through. */
function runPython(python: string, args: string[], timeoutS: number): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const child = spawn(python, [torchScript(), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as Record<string, unknown>);
      } catch {
        resolve({ error: `exited with ${code ?? 'a signal'} (timeout ${timeoutS} s) and no JSON result` });
      }
    });
  });
}

async function torchRow(python: string, dir: string, device: Device): Promise<Row | { missing: string }> {
  const args = ['--device', device === 'cuda' ? 'cuda' : 'cpu', '--model', dir, '--prefill', PREFILL.join(','), '--decode', String(DECODE), '--decode-prompt', String(DECODE_PROMPT), '--rounds', String(ROUNDS)];
  const r = await runPython(python, args, TORCH_TIMEOUT_S);
  if (typeof r.error === 'string') return { missing: r.error };
  const prefill = r.prefillMs as Record<string, number>;
  return {
    runtime: `transformers ${String(r.transformers)} (torch ${String(r.torch)}, sdpa)`,
    timings: { prefillMs: new Map(PREFILL.map((t) => [t, prefill[String(t)]])), decodeMs: r.decodeMs as number },
    peakMemory: typeof r.peakReservedBytes === 'number' ? { bytes: r.peakReservedBytes, how: 'torch max_memory_reserved' } : undefined,
    loadSeconds: r.loadSeconds as number,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// dynamoe.

function tracker() {
  const freeBefore = cudaFreeBytes();
  const usedBefore = gpuUsedBytes();
  let minFree = freeBefore;
  let maxUsed = usedBefore;
  return {
    sample() {
      const free = cudaFreeBytes();
      const used = gpuUsedBytes();
      if (free !== null && minFree !== null) minFree = Math.min(minFree, free);
      if (used !== null && maxUsed !== null) maxUsed = Math.max(maxUsed, used);
    },
    peak(): { bytes: number; how: string } | undefined {
      if (freeBefore !== null && minFree !== null) return { bytes: freeBefore - minFree, how: 'backendInfo free memory, sampled after each run' };
      if (usedBefore !== null && maxUsed !== null) return { bytes: maxUsed - usedBefore, how: 'nvidia-smi, sampled after each run' };
      return undefined;
    },
  };
}

async function dynamoeRows(dir: string, shape: GpuBenchShape, device: Device): Promise<Row[]> {
  const memory = tracker();
  const started = performance.now();
  const kvPoolTokens = Math.max(...PREFILL, DECODE_PROMPT + DECODE) + 128;
  const model = await loadModel(dir, { device, kvPoolTokens, maxSequences: 1 });
  const loadSeconds = (performance.now() - started) / 1000;
  memory.sample();
  const labels = [`top-k:${shape.topK}`, TOP_P];
  const policies = labels.map((label) => model.policies(label));
  const vocab = shape.vocab;
  try {
    const prefill = async (p: number, t: number, stats?: RoutingStatsAccumulator) => {
      const session = model.createSession(t);
      try {
        const start = performance.now();
        const r = await model.step(session, Int32Array.from(promptIds(t, vocab)), policies[p], true, stats !== undefined);
        const ms = performance.now() - start;
        if (stats && r.stats) stats.add(r.stats);
        return ms;
      } finally {
        session.dispose();
      }
    };
    const decode = async (p: number, stats?: RoutingStatsAccumulator) => {
      const session = model.createSession(DECODE_PROMPT + DECODE);
      try {
        await model.step(session, Int32Array.from(promptIds(DECODE_PROMPT, vocab)), policies[p], true, false);
        const start = performance.now();
        for (const id of decodeIds(DECODE, vocab)) {
          const r = await model.step(session, Int32Array.of(id), policies[p], true, stats !== undefined);
          if (stats && r.stats) stats.add(r.stats);
        }
        return performance.now() - start;
      } finally {
        session.dispose();
      }
    };
    // Routing statistics in a pass of their own, so that the timed runs do not collect them.
    const routed = labels.map(() => ({ prefill: new Map<number, number>(), decode: 0 }));
    for (let p = 0; p < labels.length; p++) {
      for (const t of PREFILL) {
        const stats = model.statsAccumulator(policies[p]);
        await prefill(p, t, stats);
        routed[p].prefill.set(t, stats.result().ffnExpertsPerToken);
      }
      const stats = model.statsAccumulator(policies[p]);
      await decode(p, stats);
      routed[p].decode = stats.result().ffnExpertsPerToken;
      memory.sample();
    }
    const times = labels.map(() => ({ prefill: new Map(PREFILL.map((t) => [t, [] as number[]])), decode: [] as number[] }));
    for (let round = 0; round <= ROUNDS; round++) {
      // Round 0 warms up; the policies take turns, who goes first alternating.
      for (let i = 0; i < labels.length; i++) {
        const p = (i + round) % labels.length;
        for (const t of PREFILL) {
          const ms = await prefill(p, t);
          if (round > 0) times[p].prefill.get(t)!.push(ms);
        }
        const ms = await decode(p);
        if (round > 0) times[p].decode.push(ms);
        memory.sample();
      }
    }
    const peak = memory.peak();
    return labels.map((label, p) => ({
      runtime: `dynamoe ${label}`,
      timings: {
        prefillMs: new Map(PREFILL.map((t) => [t, quantile(times[p].prefill.get(t)!, 0.5)])),
        decodeMs: quantile(times[p].decode, 0.5),
      },
      expertsPerToken: routed[p],
      peakMemory: peak,
      loadSeconds,
    }));
  } finally {
    model.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp's CUDA build (node-llama-cpp's @node-llama-cpp/linux-x64-cuda prebuilt).

/** llama.cpp on the model's GGUF; `writeFile` runs only once llama.cpp has loaded (the GGUF takes a minute to write). */
async function llamaRow(writeFile: () => Promise<string>, shape: GpuBenchShape, gpu: 'cuda' | false): Promise<Row | { missing: string }> {
  const peer = await importPeer<NodeLlamaCpp>('node-llama-cpp');
  if ('missing' in peer) return peer;
  const memory = tracker();
  let llama: Llama;
  try {
    llama = await peer.module.getLlama({ gpu, build: 'never', logLevel: peer.module.LlamaLogLevel.error });
  } catch (error) {
    const why = (error as Error).message.split('\n')[0];
    if (gpu === false) return { missing: `llama.cpp's CPU build did not load: ${why}` };
    return {
      missing:
        `llama.cpp's CUDA build did not load (${why}): it needs @node-llama-cpp/linux-x64-cuda in bench/peers ` +
        '(.ci/device-pack --peers-cuda) and libcudart / libcublas 13 on LD_LIBRARY_PATH (.ci/device-checks sets it)',
    };
  }
  const maxPrefill = Math.max(...PREFILL);
  try {
    const file = await writeFile();
    const started = performance.now();
    const model = await llama.loadModel({ modelPath: file, useMmap: false, gpuLayers: 'max' });
    const loadSeconds = (performance.now() - started) / 1000;
    const context = await model.createContext({
      contextSize: Math.max(maxPrefill, DECODE_PROMPT + DECODE) + 8,
      batchSize: maxPrefill,
      flashAttention: true,
      // On the CPU (the bench's own check) as many threads as dynamoe; on CUDA llama.cpp picks.
      ...(gpu === false ? { threads: cpuInfo().threads } : {}),
    });
    const sequence = context.getSequence();
    const output = { generateNext: { logits: true as const } };
    const evaluate = (ids: number[]) => sequence.controlledEvaluate(ids.map((id, i): EvaluateItem => (i === ids.length - 1 ? [id, output] : id)));
    const prefill = async (t: number) => {
      await sequence.clearHistory();
      const start = performance.now();
      await evaluate(promptIds(t, shape.vocab));
      return performance.now() - start;
    };
    const decode = async () => {
      await sequence.clearHistory();
      await evaluate(promptIds(DECODE_PROMPT, shape.vocab));
      const start = performance.now();
      for (const id of decodeIds(DECODE, shape.vocab)) await sequence.controlledEvaluate([[id, output]]);
      return performance.now() - start;
    };
    const times = { prefill: new Map(PREFILL.map((t) => [t, [] as number[]])), decode: [] as number[] };
    for (let round = 0; round <= ROUNDS; round++) {
      for (const t of PREFILL) {
        const ms = await prefill(t);
        if (round > 0) times.prefill.get(t)!.push(ms);
      }
      const ms = await decode();
      if (round > 0) times.decode.push(ms);
      memory.sample();
    }
    await context.dispose();
    await model.dispose();
    return {
      runtime: `llama.cpp ${gpu === 'cuda' ? 'CUDA' : 'CPU'} top-k:${shape.topK} (flash attention)`,
      timings: { prefillMs: new Map(PREFILL.map((t) => [t, quantile(times.prefill.get(t)!, 0.5)])), decodeMs: quantile(times.decode, 0.5) },
      // cudaMemGetInfo and nvidia-smi are device-wide: they see llama.cpp's allocations too.
      peakMemory: memory.peak(),
      loadSeconds,
    };
  } catch (error) {
    return { missing: `llama.cpp ${gpu === 'cuda' ? 'CUDA' : 'CPU'} failed: ${(error as Error).message.split('\n')[0]}` };
  } finally {
    await llama.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Work and bytes from the shapes.

/** Flops of one prefill of `t` tokens (last position's logits only), with `experts` FFN experts per token. */
function prefillFlops(shape: GpuBenchShape, t: number, experts: number): number {
  const w = weightCounts(shape);
  const qW = shape.heads * shape.headDim;
  // Causal attention: QK^T and PV over t(t+1)/2 (query, key) pairs per head.
  const attention = 4 * qW * ((t * (t + 1)) / 2);
  const perLayer = 2 * t * (w.attention + w.router) + attention + 2 * t * experts * w.expert;
  return shape.layers * perLayer + 2 * w.lmHead;
}

/**
 * Bytes one decode step must read from GPU memory: every layer's attention weights and router, the experts the token
 * uses (`experts` a layer), its KV at the mean context of the decode steps in bf16 (dynamoe's CUDA cache for 16-bit
 * models), and the LM head.
 */
function decodeBytes(shape: GpuBenchShape, experts: number, bytesPerWeight = 2): number {
  const w = weightCounts(shape);
  const context = DECODE_PROMPT + (DECODE + 1) / 2;
  const kv = 2 * shape.kvHeads * shape.headDim * context * 2;
  const b = bytesPerWeight;
  return shape.layers * (b * (w.attention + w.router) + b * experts * w.expert + kv) + b * w.lmHead;
}

// ---------------------------------------------------------------------------------------------------------------
// The table.

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
const figure = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
const percent = (x: number, of: number) => (Number.isFinite(of) ? `${((100 * x) / of).toFixed(0)}%` : 'no peak figure');

interface Ceilings {
  tflops: number;
  tflopsWhat: string;
  gbps: number;
  gbpsWhat: string;
}

/** `bytesPerWeight`: 2 for the bf16 files; a quantized file's mean (its size over the bf16 file's, times 2). */
function printModel(shape: GpuBenchShape, rows: Row[], ceilings: Ceilings, bytesPerWeight = 2): void {
  const top = rows[0];
  const perToken = (row: Row) => row.expertsPerToken ?? top.expertsPerToken;
  console.log(
    '| runtime | ' + PREFILL.map((t) => `prefill ${t}: tok/s, TFLOP/s (% peak)`).join(' | ') +
      ' | decode tok/s | decode GB/s (% of bandwidth) | experts/token (prefill / decode) | peak GPU memory | load s |',
  );
  console.log('|---|' + PREFILL.map(() => '---|').join('') + '---|---|---|---|---|');
  for (const row of rows) {
    const routed = perToken(row);
    const cells = PREFILL.map((t) => {
      const ms = row.timings.prefillMs.get(t)!;
      const experts = routed?.prefill.get(t) ?? shape.topK;
      const tflops = prefillFlops(shape, t, experts) / (ms / 1000) / 1e12;
      return `${((t * 1000) / ms).toFixed(0)}, ${figure(tflops)} (${percent(tflops, ceilings.tflops)})`;
    });
    const decodeRate = (DECODE * 1000) / row.timings.decodeMs;
    const gbps = (decodeRate * decodeBytes(shape, routed?.decode ?? shape.topK, bytesPerWeight)) / 1e9;
    // Only dynamoe reports its routing; peers run the same top-k.
    const own = row.expertsPerToken;
    const experts = own ? `${[...own.prefill.values()].map((e) => e.toFixed(2)).join('/')} / ${own.decode.toFixed(2)}` : '';
    const memory = row.peakMemory ? `${gib(row.peakMemory.bytes)} (${row.peakMemory.how})` : 'n/a';
    console.log(
      `| ${row.runtime} | ${cells.join(' | ')} | ${decodeRate.toFixed(1)} | ${figure(gbps)} (${percent(gbps, ceilings.gbps)}) | ` +
        `${experts} | ${memory} | ${row.loadSeconds?.toFixed(1) ?? ''} |`,
    );
  }
  console.log(
    `Peers run the model's top-k:${shape.topK}; their TFLOP/s and GB/s use dynamoe's top-k routing counts. ` +
      `% peak: of ${ceilings.tflopsWhat}; % of bandwidth: of ${ceilings.gbpsWhat}.`,
  );
  // Goals, as measured ratios.
  const k = rows.find((r) => r.runtime.startsWith(`dynamoe top-k`));
  if (!k) return;
  const decodeRate = (row: Row) => (DECODE * 1000) / row.timings.decodeMs;
  const gbps = (decodeRate(k) * decodeBytes(shape, k.expertsPerToken?.decode ?? shape.topK, bytesPerWeight)) / 1e9;
  const goal = (name: string, value: number, target: number) =>
    Number.isFinite(value) ? `${name}: ${value.toFixed(2)}x (goal ${target}x: ${value >= target ? 'met' : 'not met'})` : `${name}: no figure`;
  const lines = [goal(`decode GB/s / ${ceilings.gbpsWhat}`, gbps / ceilings.gbps, GOALS.decodeOfBandwidth)];
  const llama = rows.find((r) => r.runtime.startsWith('llama.cpp'));
  const torch = rows.find((r) => r.runtime.startsWith('transformers'));
  const prefillRatio = (peer: Row, t: number) => peer.timings.prefillMs.get(t)! / k.timings.prefillMs.get(t)!;
  if (llama) {
    lines.push(goal('decode dynamoe / llama.cpp', decodeRate(k) / decodeRate(llama), GOALS.decodeVsLlama));
    for (const t of PREFILL) lines.push(goal(`prefill ${t} dynamoe / llama.cpp`, prefillRatio(llama, t), GOALS.prefillVsLlama));
  }
  if (torch) {
    lines.push(`decode dynamoe / transformers: ${(decodeRate(k) / decodeRate(torch)).toFixed(2)}x`);
    for (const t of PREFILL) lines.push(goal(`prefill ${t} dynamoe / transformers`, prefillRatio(torch, t), GOALS.prefillVsTorch));
  }
  const p = rows.find((r) => r.runtime === `dynamoe ${TOP_P}`);
  if (p) {
    const ratio = (t: number) => k.timings.prefillMs.get(t)! / p.timings.prefillMs.get(t)!;
    const pairs = (t: number) => (p.expertsPerToken?.prefill.get(t) ?? 0) / (k.expertsPerToken?.prefill.get(t) ?? 1);
    lines.push(
      `top-p 0.4 / top-k:${shape.topK} speed: prefill ${PREFILL.map((t) => `${ratio(t).toFixed(2)}x (pairs ${pairs(t).toFixed(2)})`).join(', ')}, ` +
        `decode ${(decodeRate(p) / decodeRate(k)).toFixed(2)}x`,
    );
  }
  for (const line of lines) console.log(`- ${line}`);
}

// ---------------------------------------------------------------------------------------------------------------

/** dynamoe and llama.cpp on `bf16File` quantized to `target` by dynamoe's quantizer (the file llama.cpp loads too). */
async function quantizedTable(bf16File: string, target: QuantizeTarget, shape: GpuBenchShape, device: Device, ceilings: Ceilings): Promise<void> {
  if (!QUANTIZE_TARGETS.includes(target)) {
    console.log(`BENCH_GPU_QUANT: '${target}' is not one of ${QUANTIZE_TARGETS.join(', ')}; skipped`);
    return;
  }
  const file = bf16File.replace(/\.gguf$/, `-${target}.gguf`);
  try {
    const started = performance.now();
    await quantizeGguf(bf16File, file, target);
    const bytesPerWeight = (2 * fs.statSync(file).size) / fs.statSync(bf16File).size;
    console.log(
      `\n## ${shape.label} as ${target.toUpperCase()} (dynamoe quantize, ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
        `${gib(fs.statSync(file).size)}, ${(8 * bytesPerWeight).toFixed(2)} bits per weight)`,
    );
    const rows: Row[] = [];
    try {
      rows.push(...(await dynamoeRows(file, shape, device)));
    } catch (error) {
      console.log(`dynamoe on ${device} failed: ${(error as Error).message}`);
    }
    const llama = await llamaRow(async () => file, shape, device === 'cuda' ? 'cuda' : false);
    if ('missing' in llama) console.log(`llama.cpp: ${llama.missing}`);
    else rows.push(llama);
    if (rows.length) printModel(shape, rows, ceilings, bytesPerWeight);
  } finally {
    fs.rmSync(file, { force: true });
  }
}

function shapes(): GpuBenchShape[] {
  const keys = (env.BENCH_GPU_MODELS ?? 'mixtral,qwen3').split(',');
  const layers = env.BENCH_GPU_LAYERS ? Number(env.BENCH_GPU_LAYERS) : undefined;
  return [MIXTRAL_LIKE, QWEN3_MOE_LIKE]
    .filter((s) => keys.includes(s.key))
    .map((s) => (env.BENCH_GPU_SHAPES === 'tiny' ? tinyShape(s) : s))
    .map((s) => (layers ? withLayers(s, layers) : s));
}

export async function runGpuModelBench(device: Device): Promise<void> {
  const name = gpuName();
  const python = PEERS.has('torch') ? pythonWithTorch() : undefined;
  if (PEERS.has('torch') && !python) console.log('transformers: no python3 that imports torch and transformers (DYNAMOE_BENCH_PYTHON); peer skipped');
  // The ceilings: measured by PyTorch when it is here (a 4 GiB device-to-device copy, a bf16 8192^3 matmul).
  const probe = python && device === 'cuda' ? await runPython(python, ['--probe'], 120) : { error: 'no probe' };
  const sheet = nominal(name);
  const ceilings: Ceilings = {
    tflops: sheet?.tflops ?? (probe.matmulTflops as number | undefined) ?? NaN,
    tflopsWhat: sheet ? `${sheet.tflops} TFLOP/s (${sheet.what.split(':')[0]}, dense bf16)` : typeof probe.matmulTflops === 'number' ? 'the measured matmul' : 'no figure',
    gbps: (probe.bandwidthGBps as number | undefined) ?? (sheet ? sheet.tbps * 1000 : NaN),
    gbpsWhat: typeof probe.bandwidthGBps === 'number' ? `${(probe.bandwidthGBps as number).toFixed(0)} GB/s measured (torch D2D copy, read + write)` : sheet ? `the nominal ${sheet.tbps} TB/s (not measured: no torch)` : 'no figure',
  };
  console.log(
    `whole model on ${device} (${name}): prefill ${PREFILL.join(' / ')} tokens from an empty context (last position's logits), ` +
      `decode ${DECODE} batch-1 steps after a ${DECODE_PROMPT}-token prompt; medians of ${ROUNDS} rounds after a warm-up`,
  );
  if (typeof probe.bandwidthGBps === 'number') {
    console.log(`measured (torch): ${(probe.bandwidthGBps as number).toFixed(0)} GB/s device-to-device copy, ${(probe.matmulTflops as number).toFixed(0)} TFLOP/s bf16 8192^3 matmul`);
  }
  const root = fs.mkdtempSync(path.join(env.BENCH_GPU_DIR ?? os.tmpdir(), 'dynamoe-gpu-bench-'));
  try {
    for (const shape of shapes()) {
      const { fileBytes } = weightCounts(shape);
      console.log(
        `\n## ${shape.label}: ${shape.layers} layers, hidden ${shape.hidden}, ${shape.heads}/${shape.kvHeads} heads of ${shape.headDim}, ` +
          `${shape.experts} experts of ffn ${shape.ffn}, top-${shape.topK}, vocab ${shape.vocab}; bf16, ${gib(fileBytes)} of weights`,
      );
      const dir = path.join(root, `${shape.key}-hf`);
      let started = performance.now();
      await writeSyntheticHfDirectory(dir, shape);
      console.log(`safetensors written in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      const rows: Row[] = [];
      try {
        rows.push(...(await dynamoeRows(dir, shape, device)));
      } catch (error) {
        console.log(`dynamoe on ${device} failed: ${(error as Error).message}`);
      }
      if (python) {
        const torch = await torchRow(python, dir, device);
        if ('missing' in torch) console.log(`transformers: ${torch.missing}`);
        else rows.push(torch);
      }
      fs.rmSync(dir, { recursive: true, force: true });
      // On the CPU (a check of the bench at a tiny size) llama.cpp's CPU build stands in for its CUDA build.
      if (PEERS.has('llama')) {
        const file = path.join(root, `${shape.key}.gguf`);
        const writeFile = async () => {
          started = performance.now();
          await writeSyntheticGguf(file, shape);
          console.log(`GGUF written in ${((performance.now() - started) / 1000).toFixed(1)} s`);
          return file;
        };
        try {
          const llama = await llamaRow(writeFile, shape, device === 'cuda' ? 'cuda' : false);
          if ('missing' in llama) console.log(`llama.cpp: ${llama.missing}`);
          else rows.push(llama);
          if (rows.length) printModel(shape, rows, ceilings);
          for (const target of QUANT_TARGETS) await quantizedTable(fs.existsSync(file) ? file : await writeFile(), target, shape, device, ceilings);
        } finally {
          fs.rmSync(file, { force: true });
        }
      } else if (rows.length) {
        printModel(shape, rows, ceilings);
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
