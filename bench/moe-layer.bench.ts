// MoE-layer benchmark: ms per layer, GFLOP/s on the expert GEMMs and GB/s of expert weights read, each also as a
// fraction of this machine's measured limits (roofline probe), and what dynamic routing saves.
// Run with `npm run bench` (compiled to dist/bench). Peers (llama.cpp, ONNX Runtime) join in the CPU performance work.
import { cpuInfo, MoELayer, RoutingPolicy } from '../lib';
import { DType } from '../lib/dtype';
import { measureRoofline } from '../lib/native-internals';
import { policyLabel } from '../lib/policy';
import { syntheticActivations, syntheticLayerWeights } from '../lib/synthetic';

interface Shape {
  hidden: number;
  ffn: number;
  tokens: number;
}

const EXPERTS = 8;
const INPUT_BATCHES = 8;
const SHAPES: Shape[] = [
  { hidden: 1024, ffn: 2816, tokens: 1 },
  { hidden: 1024, ffn: 2816, tokens: 16 },
  { hidden: 1024, ffn: 2816, tokens: 256 },
  { hidden: 1024, ffn: 2816, tokens: 512 },
];
const POLICIES: RoutingPolicy[] = [
  { kind: 'top-k', k: 2 },
  { kind: 'top-p', p: 0.4 },
];

async function medianMs(run: () => Promise<unknown>, repeats: number): Promise<number> {
  await run();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    await run();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

async function main(): Promise<void> {
  const info = cpuInfo();
  const roofline = await measureRoofline();
  console.log(
    `machine limits (${roofline.threads} threads): fp32 FMA ${roofline.fmaGflops.toFixed(0)} GFLOP/s ` +
      `(${roofline.isa}), memory read ${roofline.readGBps.toFixed(1)} GB/s`,
  );
  console.log(`MoE layer, ${EXPERTS} experts, SwiGLU, ${info.threads} threads, ${info.isa} kernels`);
  console.log(
    'dtype  hidden ffn   tokens policy      pairs  ms       GFLOP/s  %peak  weight GB/s  %read  time ratio  pairs ratio',
  );
  for (const dtype of ['f32', 'bf16'] as DType[]) {
    for (const shape of SHAPES) {
      const layer = MoELayer.fromWeights(
        syntheticLayerWeights({ ...shape, experts: EXPERTS, dtype, routerLogitStd: 2.5 }, 7),
      );
      // Several batches, cycled: decode steps pick different experts, as real tokens do, instead of re-reading two
      // experts' weights that the last-level cache may still hold.
      const batches = Array.from({ length: INPUT_BATCHES }, (_, i) => syntheticActivations(shape.tokens, shape.hidden, 11 + i));
      let base: { ms: number; pairs: number } | undefined;
      for (const policy of POLICIES) {
        let pairsTotal = 0;
        let expertsUsedTotal = 0;
        for (const x of batches) {
          const { routing } = await layer.forward(x, { tokens: shape.tokens, policy });
          pairsTotal += routing.counts.reduce((a, b) => a + b, 0);
          // Each expert that got a token has its three matrices read at least once.
          expertsUsedTotal += routing.expertLoad.filter((load) => load > 0).length;
        }
        const pairs = pairsTotal / batches.length;
        let next = 0;
        const ms = await medianMs(
          () => layer.forward(batches[next++ % batches.length], { tokens: shape.tokens, policy }),
          shape.tokens < 64 ? 40 : 8,
        );
        const gflop = (2 * pairs * 3 * shape.hidden * shape.ffn) / 1e9;
        const expertBytes = 3 * shape.hidden * shape.ffn * (dtype === 'f32' ? 4 : 2);
        const weightGB = ((expertsUsedTotal / batches.length) * expertBytes) / 1e9;
        const gflops = (gflop / ms) * 1e3;
        const weightGBps = (weightGB / ms) * 1e3;
        base ??= { ms, pairs };
        console.log(
          [
            dtype.padEnd(6),
            String(shape.hidden).padEnd(6),
            String(shape.ffn).padEnd(5),
            String(shape.tokens).padEnd(6),
            policyLabel(policy).padEnd(11),
            pairs.toFixed(1).padEnd(6),
            ms.toFixed(2).padEnd(8),
            gflops.toFixed(1).padEnd(8),
            `${((100 * gflops) / roofline.fmaGflops).toFixed(0)}%`.padEnd(6),
            weightGBps.toFixed(1).padEnd(12),
            `${((100 * weightGBps) / roofline.readGBps).toFixed(0)}%`.padEnd(6),
            (ms / base.ms).toFixed(2).padEnd(11),
            (pairs / base.pairs).toFixed(2),
          ].join(' '),
        );
      }
      layer.dispose();
    }
  }
  console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
