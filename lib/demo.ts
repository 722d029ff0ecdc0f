// The demo behind `npm start`: a seeded synthetic stack of MoE layers run with top-2 and with top-p.
import { DType } from './dtype';
import { MoELayer } from './moe-layer';
import { policyLabel, RoutingPolicy } from './policy';
import { cpuInfo } from './runtime';
import { rmsNormRows, syntheticActivations, syntheticLayerWeights } from './synthetic';

/** Demo settings (the CLI's flags). */
export interface DemoOptions {
  layers: number;
  hidden: number;
  ffn: number;
  experts: number;
  tokens: number;
  dtype: DType;
  policies: RoutingPolicy[];
  seed: number;
  repeats: number;
}

export const DEFAULT_DEMO: DemoOptions = {
  layers: 4,
  hidden: 512,
  ffn: 1024,
  experts: 16,
  tokens: 256,
  dtype: 'f32',
  policies: [
    { kind: 'top-k', k: 2 },
    { kind: 'top-p', p: 0.4 },
  ],
  seed: 42,
  repeats: 3,
};

/** What one policy did over the stack. */
export interface DemoPolicyResult {
  policy: string;
  expertsPerTokenByLayer: number[];
  msPerForward: number;
  tokensPerSecond: number;
  routedPairs: number;
}

async function runStack(layers: MoELayer[], input: Float32Array, tokens: number, policy: RoutingPolicy) {
  const perLayer: number[] = [];
  let x = input;
  const start = process.hrtime.bigint();
  for (const layer of layers) {
    const { output, routing } = await layer.forward(x, { tokens, policy });
    perLayer.push(routing.counts.reduce((a, b) => a + b, 0) / tokens);
    for (let i = 0; i < output.length; i++) output[i] += x[i]; // residual
    x = rmsNormRows(output, layer.hidden);
  }
  return { perLayer, ms: Number(process.hrtime.bigint() - start) / 1e6 };
}

/** Builds the stack, runs each policy `repeats` times (median time) and returns per-policy figures. */
export async function runDemo(options: DemoOptions, log: (line: string) => void): Promise<DemoPolicyResult[]> {
  const { hidden, ffn, experts, tokens, dtype } = options;
  const info = cpuInfo();
  log(
    `dynamoe demo: ${options.layers} synthetic MoE layers (hidden ${hidden}, ffn ${ffn}, ${experts} experts, ` +
      `${dtype}), ${tokens} tokens, ${info.threads} threads, ${info.isa} kernels`,
  );
  const layers: MoELayer[] = [];
  for (let l = 0; l < options.layers; l++) {
    // Lower layers get flatter routers (less confident), as the seed paper observes in trained models.
    const routerLogitStd = 1.5 + (2.5 * l) / Math.max(1, options.layers - 1);
    layers.push(await MoELayer.load(syntheticLayerWeights({ hidden, ffn, experts, dtype, routerLogitStd }, options.seed + l)));
  }
  const input = syntheticActivations(tokens, hidden, options.seed + 1000);
  const results: DemoPolicyResult[] = [];
  try {
    for (const policy of options.policies) {
      await runStack(layers, input, tokens, policy); // warm-up
      const runs = [];
      for (let r = 0; r < options.repeats; r++) runs.push(await runStack(layers, input, tokens, policy));
      runs.sort((a, b) => a.ms - b.ms);
      const median = runs[runs.length >> 1];
      results.push({
        policy: policyLabel(policy),
        expertsPerTokenByLayer: median.perLayer,
        msPerForward: median.ms,
        tokensPerSecond: (tokens * 1000) / median.ms,
        routedPairs: median.perLayer.reduce((a, b) => a + b, 0) * tokens,
      });
    }
  } finally {
    for (const layer of layers) layer.dispose();
  }
  printDemo(results, log);
  return results;
}

function printDemo(results: DemoPolicyResult[], log: (line: string) => void): void {
  const pad = (s: string, n: number) => s.padEnd(n);
  log('');
  log(pad('experts per token', 20) + results.map((r) => pad(r.policy, 14)).join(''));
  const layers = results[0]?.expertsPerTokenByLayer.length ?? 0;
  for (let l = 0; l < layers; l++) {
    log(pad(`  layer ${l}`, 20) + results.map((r) => pad(r.expertsPerTokenByLayer[l].toFixed(2), 14)).join(''));
  }
  const mean = (r: DemoPolicyResult) => r.expertsPerTokenByLayer.reduce((a, b) => a + b, 0) / layers;
  log(pad('  mean', 20) + results.map((r) => pad(mean(r).toFixed(2), 14)).join(''));
  log(pad('tokens/s', 20) + results.map((r) => pad(r.tokensPerSecond.toFixed(0), 14)).join(''));
  log(pad('ms per forward', 20) + results.map((r) => pad(r.msPerForward.toFixed(1), 14)).join(''));
  if (results.length >= 2) {
    const [base, ...others] = results;
    log('');
    for (const other of others) {
      log(
        `${other.policy} vs ${base.policy}: time ratio ${(other.msPerForward / base.msPerForward).toFixed(2)}, ` +
          `routed-pairs ratio ${(other.routedPairs / base.routedPairs).toFixed(2)}, ` +
          `speed-up ${(base.msPerForward / other.msPerForward).toFixed(2)}x`,
      );
    }
  }
}
