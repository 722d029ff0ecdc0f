// Serving benchmark: dynamoe's OpenAI-compatible server (startServer, on loopback, in the process of its clients)
// under 1, 4, 16 and 64 concurrent streaming clients (POST /v1/completions, stream: true, temperature 0), on the
// 4-layer model of bench:model in bf16, against node-llama-cpp running as many sequences of one context on the same
// GGUF file. Per level and runtime: aggregate tokens/s, per-request decode tokens/s, time to first token, peak RSS.
// Each level of each runtime runs in a fresh child process, so its peak RSS is that runtime's alone.
// Run: npm run bench:peers && npm run bench:serve  (BENCH_SERVE_LEVELS=1,4 picks levels, BENCH_SERVE_TOKENS max_tokens)
import { fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cpuInfo } from '../lib';
import { BENCH_MODEL, writeBenchModelGguf } from './mixtral-model';
import { NodeLlamaCpp } from './node-llama-cpp-api';
import { importPeer } from './peer-loader';
import { LevelRun, openDynamoe, openLlamaCpp, runLevel, ServeTarget } from './serve-clients';
import { quantile } from './timing';

const LEVELS = (process.env.BENCH_SERVE_LEVELS ?? '1,4,16,64').split(',').map(Number);
const MAX_TOKENS = Number(process.env.BENCH_SERVE_TOKENS ?? 48);
const PROMPT_TOKENS = { shortest: 32, longest: 48 };
/** No request starts after this long into a level (the 64-client level makes one request per client anyway). */
const LEVEL_BUDGET_MS = 60_000;
const WARMUP_TOKENS = 4;
const GOALS = { scaling16: 3, versusLlama16: 1.5, ttftP99Growth16: 3 };
/** The first argument of a child process that runs one level of one runtime. */
const LEVEL_WORKER = '--level-worker';

type Runtime = 'dynamoe' | 'llama.cpp';

/** Token ids past the tiny vocabulary's special tokens, a different prompt for every `seed` below 250. */
function promptIds(seed: number): number[] {
  const length = PROMPT_TOKENS.shortest + ((seed * 5) % (PROMPT_TOKENS.longest - PROMPT_TOKENS.shortest + 1));
  return Array.from({ length }, (_, i) => 3 + ((seed * 169 + i * 37) % 250));
}

/** Requests per client: 2, but at least 8 in the level (samples for the lone-request TTFT) and at most 64 (time). */
function requestsPerClient(clients: number): number {
  return Math.max(1, Math.floor(Math.min(Math.max(2 * clients, 8), 64) / clients));
}

/** What the report shows of one runtime at one level. */
interface LevelStats {
  requests: number;
  tokens: number;
  wallS: number;
  aggregate: number;
  decodeMedian: number;
  ttftP50: number;
  ttftP99: number;
  peakRssMiB: number;
}

function levelStats(run: LevelRun): LevelStats {
  const tokens = run.requests.reduce((sum, r) => sum + r.completionTokens, 0);
  // After the first token: (tokens - 1) over the time from the first text to the end, as serving benchmarks count it.
  const decodeRates = run.requests
    .filter((r) => r.completionTokens > 1 && r.latencyMs > r.ttftMs)
    .map((r) => ((r.completionTokens - 1) * 1000) / (r.latencyMs - r.ttftMs));
  const ttfts = run.requests.map((r) => r.ttftMs);
  return {
    requests: run.requests.length,
    tokens,
    wallS: run.wallMs / 1000,
    aggregate: (tokens * 1000) / run.wallMs,
    decodeMedian: decodeRates.length > 0 ? quantile(decodeRates, 0.5) : NaN,
    ttftP50: quantile(ttfts, 0.5),
    ttftP99: quantile(ttfts, 0.99),
    peakRssMiB: run.peakRssBytes / 2 ** 20,
  };
}

async function openTarget(runtime: Runtime, file: string, clients: number): Promise<ServeTarget> {
  if (runtime === 'dynamoe') return openDynamoe(file, clients);
  const peer = await importPeer<NodeLlamaCpp>('node-llama-cpp');
  if ('missing' in peer) throw new Error(peer.missing);
  // A sequence's KV room: BOS, prompt and max_tokens, doubled for the 10% of it LlamaCompletion keeps for shifts.
  const contextPerSequence = 2 * (1 + PROMPT_TOKENS.longest + MAX_TOKENS);
  return openLlamaCpp(peer.module, file, clients, contextPerSequence, cpuInfo().threads);
}

/** The child process's work: opens the runtime, warms it up with one short untimed request, runs the level. */
async function levelWorker(runtime: Runtime, file: string, clients: number): Promise<LevelStats> {
  const target = await openTarget(runtime, file, clients);
  try {
    await target.complete(0, promptIds(249), WARMUP_TOKENS);
    const perClient = requestsPerClient(clients);
    const promptOf = (client: number, request: number) => promptIds(client * perClient + request);
    return levelStats(await runLevel(target, clients, perClient, promptOf, MAX_TOKENS, LEVEL_BUDGET_MS));
  } finally {
    await target.close();
  }
}

/** One level of one runtime in a fresh child process (this script, in its worker role). */
function measureInChild(runtime: Runtime, file: string, clients: number): Promise<LevelStats> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [LEVEL_WORKER, runtime, file, String(clients)]);
    let stats: LevelStats | undefined;
    child.on('message', (message) => {
      stats = message as LevelStats;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (stats && code === 0) resolve(stats);
      else reject(new Error(`the ${runtime} level of ${clients} clients failed (exit code ${String(code)})`));
    });
  });
}

function row(clients: number, runtime: Runtime, s: LevelStats): string {
  return (
    `| ${clients} | ${runtime} | ${s.requests} | ${s.tokens} / ${s.requests * MAX_TOKENS} | ${s.wallS.toFixed(1)} | ` +
    `${s.aggregate.toFixed(1)} | ${s.decodeMedian.toFixed(1)} | ${s.ttftP50.toFixed(0)} | ${s.ttftP99.toFixed(0)} | ` +
    `${s.peakRssMiB.toFixed(0)} |`
  );
}

function ratioRow(clients: number, ours: LevelStats, peer: LevelStats): string {
  const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  return (
    `| ${clients} | **dynamoe / llama.cpp** | | | | **${x(ours.aggregate, peer.aggregate)}** | ` +
    `${x(ours.decodeMedian, peer.decodeMedian)} | ${x(ours.ttftP50, peer.ttftP50)} | ${x(ours.ttftP99, peer.ttftP99)} | ` +
    `${x(ours.peakRssMiB, peer.peakRssMiB)} |`
  );
}

/** A goal of the serving issue: a ratio of two figures, at least or at most `goal`; undefined when not measured. */
interface Goal {
  label: string;
  ratio: number | undefined;
  goal: number;
  atMost: boolean;
  needs: string;
}

function goalLine({ label, ratio, goal, atMost, needs }: Goal): string {
  if (ratio === undefined) return `- ${label}: not measured (needs ${needs})`;
  const met = atMost ? ratio <= goal : ratio >= goal;
  return `- ${label}: **${ratio.toFixed(2)}x** (goal ${atMost ? '<=' : '>='} ${goal}x: ${met ? 'met' : 'not met'})`;
}

function printGoals(ours: Map<number, LevelStats>, theirs: Map<number, LevelStats>): void {
  const lone = ours.get(1);
  const at16 = ours.get(16);
  const llamaAt16 = theirs.get(16);
  const goals: Goal[] = [
    {
      label: 'aggregate tokens/s at 16 clients / at 1 client',
      ratio: at16 && lone && at16.aggregate / lone.aggregate,
      goal: GOALS.scaling16,
      atMost: false,
      needs: 'levels 1 and 16',
    },
    {
      label: 'aggregate tokens/s at 16 clients, dynamoe / llama.cpp',
      ratio: at16 && llamaAt16 && at16.aggregate / llamaAt16.aggregate,
      goal: GOALS.versusLlama16,
      atMost: false,
      needs: 'level 16 and node-llama-cpp',
    },
    {
      label: 'TTFT p99 at 16 clients / lone-request TTFT (p50 at 1 client)',
      ratio: at16 && lone && at16.ttftP99 / lone.ttftP50,
      goal: GOALS.ttftP99Growth16,
      atMost: true,
      needs: 'levels 1 and 16',
    },
  ];
  console.log('goals (as measured, not asserted):');
  for (const goal of goals) console.log(goalLine(goal));
}

async function main(): Promise<void> {
  if (!LEVELS.every((n) => Number.isInteger(n) && n > 0)) throw new Error('BENCH_SERVE_LEVELS: positive integers, e.g. 1,4,16,64');
  if (!Number.isInteger(MAX_TOKENS) || MAX_TOKENS < 2) throw new Error('BENCH_SERVE_TOKENS: an integer >= 2');
  const { threads, isa } = cpuInfo();
  const { layers, hidden, ffn, experts, kvHeads } = BENCH_MODEL;
  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} hardware threads`);
  console.log(
    `serving: Mixtral-style bf16 GGUF, ${layers} MoE layers, hidden ${hidden}, ${experts} experts x ffn ${ffn}, ` +
      `${hidden / 128}/${kvHeads} heads; dynamoe ${threads} threads (${isa} kernels), llama.cpp ${threads} threads; ` +
      `streamed completions of ${PROMPT_TOKENS.shortest}-${PROMPT_TOKENS.longest}-token prompts, max_tokens ${MAX_TOKENS}, greedy`,
  );
  const peer = await importPeer<NodeLlamaCpp>('node-llama-cpp');
  const runtimes: Runtime[] = 'missing' in peer ? ['dynamoe'] : ['dynamoe', 'llama.cpp'];
  if ('missing' in peer) console.log(`llama.cpp: ${peer.missing}; dynamoe's figures only`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-serve-bench-'));
  try {
    const file = path.join(dir, 'mixtral-bf16.gguf');
    await writeBenchModelGguf(file, 'bf16');
    console.log(
      '| clients | runtime | requests | tokens (of max) | wall s | aggregate tokens/s | decode tokens/s per request (median) | ' +
        'TTFT p50 ms | TTFT p99 ms | peak RSS MiB |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    const results: Record<Runtime, Map<number, LevelStats>> = { dynamoe: new Map(), 'llama.cpp': new Map() };
    for (const clients of LEVELS) {
      for (const runtime of runtimes) {
        const stats = await measureInChild(runtime, file, clients);
        results[runtime].set(clients, stats);
        console.log(row(clients, runtime, stats));
      }
      const ours = results.dynamoe.get(clients);
      const theirs = results['llama.cpp'].get(clients);
      if (ours && theirs) console.log(ratioRow(clients, ours, theirs));
    }
    printGoals(results.dynamoe, results['llama.cpp']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function worker(): Promise<void> {
  const [runtime, file, clients] = process.argv.slice(3);
  const stats = await levelWorker(runtime as Runtime, file, Number(clients));
  const send = process.send?.bind(process);
  if (!send) throw new Error(`${LEVEL_WORKER} runs as a child process of the bench`);
  // The IPC channel keeps this process alive: closed once the stats are sent.
  await new Promise<void>((resolve, reject) => send(stats, undefined, {}, (error: Error | null) => (error ? reject(error) : resolve())));
  process.disconnect();
}

(process.argv[2] === LEVEL_WORKER ? worker() : main()).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
