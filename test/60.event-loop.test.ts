// A large forward runs off the event loop: while it computes, timers keep firing and the loop's delay stays small.
import { monitorEventLoopDelay } from 'perf_hooks';
import { MoELayer } from '../lib';
import { Rng } from './reference';

const HIDDEN = 1024;
const FFN = 2816;
const EXPERTS = 8;
const INTERVAL_MS = 5;
const MAX_LOOP_DELAY_MS = 200;

/** Fills `out` with uniform(-scale, scale) quickly: a few seeded blocks, tiled (the values only need to be real). */
function fill(out: Float32Array, rng: Rng, scale: number): Float32Array {
  const block = rng.uniformArray(Math.min(out.length, 1 << 16), -scale, scale);
  for (let offset = 0; offset < out.length; offset += block.length) {
    out.set(block.subarray(0, Math.min(block.length, out.length - offset)), offset);
  }
  return out;
}

describe('forward() does not block the event loop', () => {
  let layer: MoELayer;
  let x: Float32Array;
  let tokens = 512;

  beforeAll(async () => {
    const rng = new Rng(60);
    const expertElements = FFN * HIDDEN;
    const gate = Array.from({ length: EXPERTS }, () => fill(new Float32Array(expertElements), rng, 0.03));
    const up = Array.from({ length: EXPERTS }, () => fill(new Float32Array(expertElements), rng, 0.03));
    const down = Array.from({ length: EXPERTS }, () => fill(new Float32Array(expertElements), rng, 0.02));
    layer = MoELayer.fromWeights({
      hidden: HIDDEN,
      ffn: FFN,
      experts: EXPERTS,
      dtype: 'f32',
      router: rng.normalArray(EXPERTS * HIDDEN, 0.05),
      gate,
      up,
      down,
    });
    // size the batch so the forward takes a few hundred ms on this machine (>= 512 tokens, at most 4096)
    const probeTokens = 64;
    const probe = rng.normalArray(probeTokens * HIDDEN);
    await layer.forward(probe, { tokens: probeTokens, policy: { kind: 'top-k', k: 2 } }); // warm-up
    const start = performance.now();
    await layer.forward(probe, { tokens: probeTokens, policy: { kind: 'top-k', k: 2 } });
    const msPerToken = (performance.now() - start) / probeTokens;
    tokens = Math.min(4096, Math.max(512, Math.ceil(300 / Math.max(msPerToken, 1e-3))));
    x = rng.normalArray(tokens * HIDDEN);
  });

  afterAll(() => layer?.dispose());

  it('timers tick and the event-loop delay stays below 200 ms during a large top-2 forward', async () => {
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    let ticks = 0;
    const interval = setInterval(() => ticks++, INTERVAL_MS);
    histogram.enable();
    const start = performance.now();
    let ticksAtResolve = -1;
    const result = await layer.forward(x, { tokens, policy: { kind: 'top-k', k: 2 } }).then((r) => {
      ticksAtResolve = ticks;
      return r;
    });
    const elapsedMs = performance.now() - start;
    histogram.disable();
    clearInterval(interval);

    const maxDelayMs = histogram.max / 1e6;
    const summary = `tokens=${tokens} forward=${elapsedMs.toFixed(0)}ms ticks=${ticksAtResolve} maxDelay=${maxDelayMs.toFixed(1)}ms`;
    expect({ summary, tookLong: elapsedMs > 50 }).toEqual({ summary, tookLong: true });
    // ticks counted up to the moment the forward resolved: they happened while it ran
    expect(ticksAtResolve).toBeGreaterThanOrEqual(Math.min(5, Math.floor(elapsedMs / INTERVAL_MS / 4)));
    expect(ticksAtResolve).toBeGreaterThanOrEqual(3);
    expect({ summary, maxDelayOk: maxDelayMs < MAX_LOOP_DELAY_MS }).toEqual({ summary, maxDelayOk: true });
    // and the forward did real work
    expect(result.output.length).toBe(tokens * HIDDEN);
    expect(result.output.every(Number.isFinite)).toBe(true);
    expect(result.work.gateUpRows.reduce((a, b) => a + b, 0)).toBe(2 * tokens);
  });

  it('other promises settle while a forward is in flight', async () => {
    const forward = layer.forward(x, { tokens, policy: { kind: 'top-k', k: 2 } });
    let forwardDone = false;
    forward.then(() => (forwardDone = true));
    const timerFired = await new Promise<boolean>((resolve) => setTimeout(() => resolve(!forwardDone), 10));
    expect(timerFired).toBe(true);
    await forward;
    expect(forwardDone).toBe(true);
  });
});
