// The `dynamoe` command line: the usage, each command's flags, and the dispatch to `demo` (the default, what
// `npm start` runs), `run`, `serve`, `sweep`, `calibrate`, `inspect`, `info` and `doctor`.
import { parseArgs, ParseArgsConfig } from 'util';
import { packageRoot } from '../addon/binary-choice';
import { doctorReport } from '../addon/binary-diagnosis';
import { cpuInfo, setThreads } from '../backend/cpu-settings';
import { fail, numberFlag, Values } from './args';
import { calibrateCommand } from './calibrate-command';
import { DEFAULT_DEMO } from './demo';
import { demoCommand } from './demo-command';
import { inspectCommand } from './inspect-command';
import { quantizeCommand } from './quantize-command';
import { runCommand } from './run-command';
import { serveCommand } from './serve-command';
import { SHIPPED_MODEL_NAME } from './shipped-model';
import { DEFAULT_SWEEP_POLICIES, sweepCommand } from './sweep-command';

const USAGE = `usage: dynamoe [demo] [options]        generate with the shipped trained MoE model under several routing policies
       dynamoe run <model>|--demo --prompt <text> [options]   generate text with a checkpoint (--demo: the shipped
                                                       model), streamed to stdout
       dynamoe serve [<model>] [options]               an OpenAI-compatible HTTP server (without a model: the
                                                       shipped model); SIGINT/SIGTERM drain and stop
       dynamoe sweep <model>|--demo --text <file> [options]   perplexity, experts/token and speed under many policies
       dynamoe calibrate <model>|--demo --text <file> --experts-per-token <n>   per-layer thresholds for a budget
       dynamoe inspect <model> [--dtype t]             show a checkpoint's architecture, sizes and tokenizer
       dynamoe quantize <model.gguf> --type q4_k_m --out <file.gguf>   a quantized copy (q4_k_m, q8_0, q4_0,
                                                       q4_k, q6_k) that llama.cpp and dynamoe load
       dynamoe info                                    show the CPU backend: SIMD kernels, threads
       dynamoe doctor                                  which native binary loads here, what each device would do,
                                                       and the fix when one cannot (exit code 1 when the
                                                       requested device, DYNAMOE_DEVICE or 'auto', cannot run)
<model> is a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a .gguf file. The shipped model
(models/${SHIPPED_MODEL_NAME}) is a small MoE trained with top-p routing on the King James Bible; --synthetic
swaps in a seeded random Mixtral-style model (for benchmarks and tests).

demo options:
  --policy <p>      a routing policy, repeatable: top-k:2, top-p:0.4, threshold:0.1 (default: top-k:2 and top-p:0.4);
                    a comma-separated list gives each MoE layer its own
  --tokens <n>      tokens generated per policy (default ${DEFAULT_DEMO.tokens})
  --prompt <text>   the prompt (default: ${JSON.stringify(DEFAULT_DEMO.prompt)})
  --synthetic       the seeded synthetic model instead of the shipped one
  --layers <n> --hidden <n> --heads <n> --kv-heads <n> --experts <n> --ffn <n>
                    synthetic model shape, with --synthetic (default ${[DEFAULT_DEMO.layers, DEFAULT_DEMO.hidden,
                      DEFAULT_DEMO.heads, DEFAULT_DEMO.kvHeads, DEFAULT_DEMO.experts, DEFAULT_DEMO.ffn].join(', ')})
  --seed <n>        synthetic weight seed, with --synthetic (default ${DEFAULT_DEMO.seed})
  --repeats <n>     timed generations per policy, the median is shown (default ${DEFAULT_DEMO.repeats})
run options:
  --demo            run the shipped model (no model path)
  --prompt <text>   the prompt (required)
  --chat            wrap the prompt as one user message in the model's chat template
  --policy <p>      routing policy for every MoE layer, a comma-separated list (one per MoE layer), or a
                    policy file from 'calibrate' (*.json) (default: the policy the model was trained with)
  --max-tokens <n>  most tokens to generate (default 128)
  --temperature <t> 0 (default) is greedy; --top-k <k>, --top-p <p>, --seed <n> shape the sampling
serve options:
  --synthetic       serve the demo's seeded synthetic model (no model path)
  --host <h>        interface to listen on (default 127.0.0.1); --port <n> (default 8080, 0: any free port)
  --device <d>      cpu | cuda | auto (default auto); --policy <p> the default routing policy, as for run
  --max-sequences <n>  generations batched in each model step (default: 16 per CPU thread, 32 to 256)
  --tokens-per-step <n>  tokens per model step: decodes, then prompt chunks (default: 128 per thread, >= 256)
  --kv-pool-tokens <n>  KV cache positions shared by all sequences (default: sized from memory)
  --max-queue <n>   requests waiting for a sequence, beyond it 429 (default 64)
  --context <n>     most prompt + max_tokens per request (default: the model's context)
  --default-max-tokens <n>  max_tokens of a chat request that gives none (default 1024; completions: 16)
  --model-name <s>  the model id of /v1/models and responses (default: the checkpoint's basename)
  --max-body-bytes <n>  largest request body, beyond it 413 (default 1048576)
  --drain-timeout <s>   seconds running generations get to finish after SIGINT/SIGTERM (default 30)
sweep and calibrate options:
  --text <file>     the text to measure on (with --demo: the shipped model's held-out text when left out)
  --demo            measure the shipped model instead of a checkpoint
  --synthetic       with --demo: the seeded synthetic model, on a built-in paragraph when --text is left out
  --zero-experts <n>  with --synthetic: n identity zero-computation experts per MoE layer beside the 16 FFN ones
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
  --dtype <t>       f32 | f16 | bf16 weights, or q8_0 | q4_0 | q4_k | q6_k experts quantized as they load
                    (default: the checkpoint's; a quantized GGUF keeps its types; demo: f32)
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
    synthetic: { type: 'boolean' },
  },
  run: {
    ...COMMON,
    demo: { type: 'boolean' },
    prompt: { type: 'string' },
    chat: { type: 'boolean' },
    policy: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    seed: { type: 'string' },
  },
  serve: {
    ...COMMON,
    synthetic: { type: 'boolean' },
    host: { type: 'string' },
    port: { type: 'string' },
    device: { type: 'string' },
    policy: { type: 'string' },
    'max-sequences': { type: 'string' },
    'max-queue': { type: 'string' },
    'tokens-per-step': { type: 'string' },
    'kv-pool-tokens': { type: 'string' },
    context: { type: 'string' },
    'default-max-tokens': { type: 'string' },
    'model-name': { type: 'string' },
    'max-body-bytes': { type: 'string' },
    'drain-timeout': { type: 'string' },
  },
  sweep: {
    ...COMMON,
    text: { type: 'string' },
    demo: { type: 'boolean' },
    synthetic: { type: 'boolean' },
    'zero-experts': { type: 'string' },
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
    synthetic: { type: 'boolean' },
    'zero-experts': { type: 'string' },
    window: { type: 'string' },
    'max-tokens': { type: 'string' },
    'experts-per-token': { type: 'string' },
    grid: { type: 'string' },
    out: { type: 'string' },
  },
  inspect: COMMON,
  quantize: { type: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  info: COMMON,
  doctor: { help: COMMON.help },
};

/** Runs one dynamoe command line (the arguments after `dynamoe`). */
export async function main(argv: string[]): Promise<void> {
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
  else if (command === 'serve') await serveCommand(values, parsed.positionals);
  else if (command === 'inspect') await inspectCommand(values, parsed.positionals);
  else if (command === 'quantize') await quantizeCommand(values, parsed.positionals);
  else if (command === 'sweep') await sweepCommand(values, parsed.positionals);
  else if (command === 'calibrate') await calibrateCommand(values, parsed.positionals);
  else await demoCommand(values);
}
