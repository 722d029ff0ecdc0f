#!/usr/bin/env node
// The `dynamoe` command line: `demo` (the default, what `npm start` runs), `run`, `sweep`, `calibrate`, `inspect`,
// `info` and `doctor`.
import { parseArgs, ParseArgsConfig } from 'util';
import { dtypeFlag, fail, modelArgument, numberFlag, policyOrFileFlag, Values } from './cli/args';
import { calibrateCommand } from './cli/calibrate-command';
import { loadingProgress, loadWithProgress } from './cli/progress';
import { DEFAULT_SWEEP_POLICIES, sweepCommand } from './cli/sweep-command';
import { doctorReport } from './binary-diagnosis';
import { packageRoot } from './binary-loader';
import { DEFAULT_DEMO, runDemo } from './demo';
import { DynamoeError } from './errors';
import { formatBytes } from './format-bytes';
import { GenerateOptions, Model } from './model/model';
import { RoutingStats } from './model/routing-stats';
import { FeedForwardSpec } from './model/spec';
import { cpuInfo, setThreads } from './runtime';

const USAGE = `usage: dynamoe [demo] [options]        generate with a seeded synthetic MoE model under several routing policies
       dynamoe run <model> --prompt <text> [options]   generate text with a checkpoint, streamed to stdout
       dynamoe sweep <model>|--demo --text <file> [options]   perplexity, experts/token and speed under many policies
       dynamoe calibrate <model>|--demo --text <file> --experts-per-token <n>   per-layer thresholds for a budget
       dynamoe inspect <model> [--dtype t]             show a checkpoint's architecture, sizes and tokenizer
       dynamoe info                                    show the CPU backend: SIMD kernels, threads
       dynamoe doctor                                  which native binary loads here, what each device would do,
                                                       and the fix when one cannot (exit code 1 when the
                                                       requested device, DYNAMOE_DEVICE or 'auto', cannot run)
<model> is a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a .gguf file.

demo options:
  --policy <p>      a routing policy, repeatable: top-k:2, top-p:0.4, threshold:0.1 (default: top-k:2 and top-p:0.4);
                    a comma-separated list gives each MoE layer its own
  --tokens <n>      tokens generated per policy (default ${DEFAULT_DEMO.tokens})
  --prompt <text>   the prompt (default: a fixed sentence)
  --layers <n> --hidden <n> --heads <n> --kv-heads <n> --experts <n> --ffn <n>
                    synthetic model shape (default ${[DEFAULT_DEMO.layers, DEFAULT_DEMO.hidden, DEFAULT_DEMO.heads,
                      DEFAULT_DEMO.kvHeads, DEFAULT_DEMO.experts, DEFAULT_DEMO.ffn].join(', ')})
  --seed <n>        weight seed (default ${DEFAULT_DEMO.seed})
  --repeats <n>     timed generations per policy, the median is shown (default ${DEFAULT_DEMO.repeats})
run options:
  --prompt <text>   the prompt (required)
  --chat            wrap the prompt as one user message in the model's chat template
  --policy <p>      routing policy for every MoE layer, a comma-separated list (one per MoE layer), or a
                    policy file from 'calibrate' (*.json) (default: the policy the model was trained with)
  --max-tokens <n>  most tokens to generate (default 128)
  --temperature <t> 0 (default) is greedy; --top-k <k>, --top-p <p>, --seed <n> shape the sampling
sweep and calibrate options:
  --text <file>     the text to measure on (with --demo: a built-in paragraph when left out)
  --demo            measure the demo's synthetic model instead of a checkpoint
  --window <n>      tokens per window, each a fresh sequence (default 512, or the model's context if smaller)
  --max-tokens <n>  measure only the text's first n tokens
sweep options:
  --policies <list> policies and ranges, each for every MoE layer
                    (default ${DEFAULT_SWEEP_POLICIES})
  --json <file>     the report (default sweep.json); --svg <file> the chart (default sweep.svg)
calibrate options:
  --experts-per-token <n>  the budget: mean experts per token over the MoE layers (required)
  --grid <list>     candidate p per layer, e.g. 0.1..0.9:0.1 (the default) or 0.2,0.4,0.6
  --out <file>      the policy file written (default policy.json)
common options:
  --dtype <t>       f32 | f16 | bf16 weights (default: the checkpoint's; demo: f32)
  --threads <n>     CPU threads (default: all cores)
  -h, --help        this text`;

type Options = NonNullable<ParseArgsConfig['options']>;
const COMMON: Options = { dtype: { type: 'string' }, threads: { type: 'string' }, help: { type: 'boolean', short: 'h' } };
const COMMANDS: Record<string, Options> = {
  demo: {
    ...COMMON,
    policy: { type: 'string', multiple: true },
    tokens: { type: 'string' },
    prompt: { type: 'string' },
    layers: { type: 'string' },
    hidden: { type: 'string' },
    heads: { type: 'string' },
    'kv-heads': { type: 'string' },
    experts: { type: 'string' },
    ffn: { type: 'string' },
    seed: { type: 'string' },
    repeats: { type: 'string' },
  },
  run: {
    ...COMMON,
    prompt: { type: 'string' },
    chat: { type: 'boolean' },
    policy: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    seed: { type: 'string' },
  },
  sweep: {
    ...COMMON,
    text: { type: 'string' },
    demo: { type: 'boolean' },
    window: { type: 'string' },
    'max-tokens': { type: 'string' },
    policies: { type: 'string' },
    json: { type: 'string' },
    svg: { type: 'string' },
  },
  calibrate: {
    ...COMMON,
    text: { type: 'string' },
    demo: { type: 'boolean' },
    window: { type: 'string' },
    'max-tokens': { type: 'string' },
    'experts-per-token': { type: 'string' },
    grid: { type: 'string' },
    out: { type: 'string' },
  },
  inspect: COMMON,
  info: COMMON,
  doctor: { help: COMMON.help },
};

/** Per-layer figures: compact when all equal. */
function perLayer(values: string[]): string {
  return values.every((v) => v === values[0]) ? `${values[0]} (every layer)` : values.join(' ');
}

function routingSummary(stats: RoutingStats): string[] {
  return [
    `policy          ${stats.policy}`,
    `experts/token   ${stats.expertsPerToken.toFixed(2)} mean; ` +
      `per MoE layer: ${stats.layers.map((l) => l.expertsPerToken.toFixed(2)).join(' ')}`,
  ];
}

async function runCommand(values: Values, positionals: string[]): Promise<void> {
  const location = modelArgument(positionals, 'run');
  const promptText = values.prompt as string | undefined;
  if (promptText === undefined) fail(`'run' needs --prompt <text>`);
  const options: GenerateOptions = {
    maxTokens: numberFlag(values, 'max-tokens', 128),
    temperature: numberFlag(values, 'temperature', 0, false),
    topK: numberFlag(values, 'top-k', 0, true, 0),
    topP: numberFlag(values, 'top-p', 1, false),
    seed: numberFlag(values, 'seed', 0, true, 0),
  };
  if (values.policy !== undefined) options.policy = await policyOrFileFlag(values.policy as string);
  const model = await loadWithProgress(location, dtypeFlag(values));
  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once('SIGINT', onInterrupt);
  try {
    let prompt = promptText;
    if (values.chat) {
      const rendered = model.tokenizer.applyChatTemplate([{ role: 'user', content: promptText }], { addGenerationPrompt: true });
      if (rendered === null) {
        throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${location} has no chat template; leave out --chat`);
      }
      prompt = rendered;
      options.addSpecialTokens = false; // templates write their own BOS
    }
    const generation = model.generate(prompt, { ...options, signal: abort.signal });
    for await (const token of generation) process.stdout.write(token.text);
    process.stdout.write('\n');
    const s = generation.summary;
    if (!s) return;
    const rate = (tokens: number, ms: number) => (ms > 0 ? ((tokens * 1000) / ms).toFixed(1) : '-');
    const decodeSteps = Math.max(0, s.tokenIds.length - 1); // the prefill step yields the first token
    const lines = [
      ...routingSummary(s.stats),
      `tokens          ${s.promptTokens} prompt + ${s.tokenIds.length} generated (stopped: ${s.stopReason})`,
      `prefill         ${rate(s.promptTokens, s.prefillMs)} tokens/s (${s.prefillMs.toFixed(1)} ms)`,
      `decode          ${rate(decodeSteps, s.decodeMs)} tokens/s (${s.decodeMs.toFixed(1)} ms)`,
    ];
    process.stderr.write(`${lines.join('\n')}\n`);
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    model.dispose();
  }
}

function layerText(layer: FeedForwardSpec): string {
  if (layer.kind === 'dense') return `dense, ffn ${layer.ffn}`;
  const shared = layer.shared ? `, shared expert ffn ${layer.shared.ffn}${layer.shared.gated ? ' (gated)' : ''}` : '';
  return `moe, ${layer.experts} experts x ffn ${layer.ffn}${shared}`;
}

/** Runs of equal layers: `0-1  moe, 8 experts x ffn 48`. */
function layerRuns(layers: FeedForwardSpec[]): string[] {
  const out: string[] = [];
  for (let start = 0; start < layers.length; ) {
    const text = layerText(layers[start]);
    let end = start;
    while (end + 1 < layers.length && layerText(layers[end + 1]) === text) end++;
    out.push(`  ${start === end ? `${start}` : `${start}-${end}`}`.padEnd(16) + text);
    start = end + 1;
  }
  return out;
}

function hasChatTemplate(model: Model): boolean {
  try {
    return model.tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }) !== null;
  } catch {
    return true; // a template that rejects this conversation is still a template
  }
}

async function inspectCommand(values: Values, positionals: string[]): Promise<void> {
  const location = modelArgument(positionals, 'inspect');
  const model = await loadWithProgress(location, dtypeFlag(values));
  try {
    const info = model.info;
    const t = model.tokenizer;
    const moe = info.layers.filter((l) => l.kind === 'moe').length;
    const lines = [
      `architecture    ${info.architecture}`,
      `source          ${info.source}`,
      `dtype           ${info.dtype}`,
      `layers          ${info.layers.length} (${moe} MoE, ${info.layers.length - moe} dense)`,
      ...layerRuns(info.layers),
      `hidden          ${info.hidden}, heads ${info.heads}, kv heads ${info.kvHeads}, head dim ${info.headDim}`,
      `vocab           ${info.vocab}`,
      `context         ${info.maxContext}`,
      `default policy  ${perLayer(info.defaultPolicy)}`,
      `weights         ${formatBytes(info.weightBytes)}`,
      `tokenizer       ${t.vocabSize} tokens, bos ${t.bosTokenId ?? 'none'}, eos ${t.eosTokenIds.join(',') || 'none'}, ` +
        `chat template: ${hasChatTemplate(model) ? 'yes' : 'no'}`,
    ];
    console.log(lines.join('\n'));
  } finally {
    model.dispose();
  }
}

async function demoCommand(values: Values): Promise<void> {
  const progress = process.stderr.isTTY ? loadingProgress('synthetic model') : undefined;
  const policies = values.policy as string[] | undefined;
  try {
    await runDemo(
      {
        layers: numberFlag(values, 'layers', DEFAULT_DEMO.layers),
        hidden: numberFlag(values, 'hidden', DEFAULT_DEMO.hidden),
        heads: numberFlag(values, 'heads', DEFAULT_DEMO.heads),
        kvHeads: numberFlag(values, 'kv-heads', DEFAULT_DEMO.kvHeads),
        experts: numberFlag(values, 'experts', DEFAULT_DEMO.experts),
        ffn: numberFlag(values, 'ffn', DEFAULT_DEMO.ffn),
        dtype: dtypeFlag(values) ?? DEFAULT_DEMO.dtype,
        seed: numberFlag(values, 'seed', DEFAULT_DEMO.seed, true, 0),
        policies: policies ?? DEFAULT_DEMO.policies,
        tokens: numberFlag(values, 'tokens', DEFAULT_DEMO.tokens),
        prompt: (values.prompt as string | undefined) ?? DEFAULT_DEMO.prompt,
        repeats: numberFlag(values, 'repeats', DEFAULT_DEMO.repeats),
      },
      (line) => {
        progress?.stop(); // the bar, if any, is done once the first result line is printed
        console.log(line);
      },
      progress?.onProgress,
    );
  } finally {
    progress?.stop();
  }
}

async function main(argv: string[]): Promise<void> {
  const named = argv[0] !== undefined && !argv[0].startsWith('-');
  const command = named ? argv[0] : 'demo';
  if (!Object.hasOwn(COMMANDS, command)) fail(`unknown command '${command}' (dynamoe --help shows the usage)`);
  const options = COMMANDS[command];
  let parsed;
  try {
    const allowPositionals = command !== 'demo' && command !== 'info' && command !== 'doctor';
    parsed = parseArgs({ args: named ? argv.slice(1) : argv, options, allowPositionals });
  } catch (error) {
    fail(`dynamoe ${command}: ${(error as Error).message} (dynamoe --help shows the usage)`);
  }
  const values = parsed.values as Values;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (command === 'doctor') {
    // Diagnoses without loading through the normal path, so it also works where that path would throw.
    const report = doctorReport(packageRoot());
    console.log(report.text);
    if (!report.ok) process.exitCode = 1;
    return;
  }
  if (values.threads !== undefined) setThreads(numberFlag(values, 'threads', 1));
  if (command === 'info') console.log(JSON.stringify(cpuInfo(), null, 2));
  else if (command === 'run') await runCommand(values, parsed.positionals);
  else if (command === 'inspect') await inspectCommand(values, parsed.positionals);
  else if (command === 'sweep') await sweepCommand(values, parsed.positionals);
  else if (command === 'calibrate') await calibrateCommand(values, parsed.positionals);
  else await demoCommand(values);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const e = error as Error & { code?: string };
  console.error(`dynamoe: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exitCode = 1;
});
