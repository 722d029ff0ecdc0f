#!/usr/bin/env node
// The `dynamoe` command line: `demo` (the default, what `npm start` runs) and `info`.
import { parseArgs } from 'util';
import { DEFAULT_DEMO, runDemo } from './demo';
import { DType } from './dtype';
import { DynamoeError } from './errors';
import { parsePolicy } from './policy';
import { cpuInfo, setThreads } from './runtime';

const USAGE = `usage: dynamoe [demo] [options]    run a seeded synthetic MoE stack with several routing policies
       dynamoe info                  show the CPU backend: SIMD kernels in use, supported ones, threads

demo options:
  --policy <p>     a routing policy, repeatable: top-k:2, top-p:0.4, threshold:0.1 (default: top-k:2 and top-p:0.4)
  --layers <n>     MoE layers (default ${DEFAULT_DEMO.layers})
  --hidden <n>     model width (default ${DEFAULT_DEMO.hidden})
  --ffn <n>        expert intermediate size (default ${DEFAULT_DEMO.ffn})
  --experts <n>    routed experts per layer (default ${DEFAULT_DEMO.experts})
  --tokens <n>     tokens per forward (default ${DEFAULT_DEMO.tokens})
  --dtype <t>      f32 | f16 | bf16 expert weights (default ${DEFAULT_DEMO.dtype})
  --threads <n>    CPU threads (default: all cores)
  --seed <n>       weight seed (default ${DEFAULT_DEMO.seed})
  --repeats <n>    timed runs per policy, the median is shown (default ${DEFAULT_DEMO.repeats})`;

function integer(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new DynamoeError('ERR_DYNAMOE_SHAPE', `--${name} must be a positive integer, got '${value}'`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      policy: { type: 'string', multiple: true },
      layers: { type: 'string' },
      hidden: { type: 'string' },
      ffn: { type: 'string' },
      experts: { type: 'string' },
      tokens: { type: 'string' },
      dtype: { type: 'string' },
      threads: { type: 'string' },
      seed: { type: 'string' },
      repeats: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0] ?? 'demo';
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.threads !== undefined) setThreads(integer(values.threads, 1, 'threads'));
  if (command === 'info') {
    console.log(JSON.stringify(cpuInfo(), null, 2));
    return;
  }
  if (command !== 'demo') throw new DynamoeError('ERR_DYNAMOE_TYPE', `unknown command '${command}'\n${USAGE}`);
  await runDemo(
    {
      layers: integer(values.layers, DEFAULT_DEMO.layers, 'layers'),
      hidden: integer(values.hidden, DEFAULT_DEMO.hidden, 'hidden'),
      ffn: integer(values.ffn, DEFAULT_DEMO.ffn, 'ffn'),
      experts: integer(values.experts, DEFAULT_DEMO.experts, 'experts'),
      tokens: integer(values.tokens, DEFAULT_DEMO.tokens, 'tokens'),
      dtype: (values.dtype ?? DEFAULT_DEMO.dtype) as DType,
      policies: values.policy ? values.policy.map(parsePolicy) : DEFAULT_DEMO.policies,
      seed: integer(values.seed, DEFAULT_DEMO.seed, 'seed'),
      repeats: integer(values.repeats, DEFAULT_DEMO.repeats, 'repeats'),
    },
    (line) => console.log(line),
  );
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const e = error as Error & { code?: string };
  console.error(`dynamoe: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exitCode = 1;
});
