// MoELayer.load: packing on a worker thread gives the same layer as fromWeights, keeps the event loop free,
// and rejects bad input with the same coded errors.
import { monitorEventLoopDelay } from 'perf_hooks';
import { DynamoeError, MoELayer, MoELayerWeights } from '../lib';
import { syntheticActivations, syntheticLayerWeights } from '../lib/layer/synthetic-layer';

describe('MoELayer.load', () => {
  it('resolves to a layer whose forward is bit-identical to fromWeights (bf16, shared expert)', async () => {
    const weights = syntheticLayerWeights({ hidden: 96, ffn: 72, experts: 6, dtype: 'bf16', routerLogitStd: 2 }, 3);
    const shared = syntheticLayerWeights({ hidden: 96, ffn: 40, experts: 1, dtype: 'bf16', routerLogitStd: 1 }, 4);
    const full = {
      ...weights,
      shared: {
        ffn: 40,
        gate: shared.gate as Float32Array,
        up: shared.up as Float32Array,
        down: shared.down as Float32Array,
        gateWeight: shared.router,
      },
    };
    const loaded = await MoELayer.load(full);
    const direct = MoELayer.fromWeights(full);
    expect(loaded).toBeInstanceOf(MoELayer);
    expect(loaded.weightBytes).toBe(direct.weightBytes);
    expect(loaded.hasSharedExpert).toBe(true);
    const x = syntheticActivations(33, 96, 5);
    const policy = { kind: 'top-p', p: 0.5 } as const;
    const a = await loaded.forward(x, { tokens: 33, policy });
    const b = await direct.forward(x, { tokens: 33, policy });
    expect(Buffer.from(a.output.buffer).equals(Buffer.from(b.output.buffer))).toBe(true);
    expect(Array.from(a.routing.ids)).toEqual(Array.from(b.routing.ids));
    loaded.dispose();
    direct.dispose();
  });

  it('keeps the event loop responsive while a large layer packs', async () => {
    const [H, F, E] = [1024, 2816, 8];
    const filled = (n: number) => new Float32Array(n).fill(0.01); // values do not matter here, only the size
    const weights: MoELayerWeights = {
      hidden: H,
      ffn: F,
      experts: E,
      dtype: 'f32',
      router: filled(E * H),
      gate: filled(E * F * H),
      up: filled(E * F * H),
      down: filled(E * H * F),
    };
    const delay = monitorEventLoopDelay({ resolution: 5 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    delay.enable();
    const start = process.hrtime.bigint();
    const layer = await MoELayer.load(weights);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    delay.disable();
    clearInterval(timer);
    layer.dispose();
    expect(ms).toBeGreaterThan(30); // 277 MB of weights: real work happened off the loop
    expect(ticks).toBeGreaterThanOrEqual(2);
    expect(delay.max / 1e6).toBeLessThan(100);
  });

  it('rejects bad input with coded errors (shape, dtype)', async () => {
    const weights = syntheticLayerWeights({ hidden: 8, ffn: 8, experts: 2, dtype: 'f32', routerLogitStd: 1 }, 1);
    await expect(MoELayer.load({ ...weights, gate: new Float32Array(3) })).rejects.toMatchObject({
      code: 'ERR_DYNAMOE_SHAPE',
    });
    await expect(MoELayer.load({ ...weights, up: [new Uint16Array(64), new Uint16Array(64)] })).rejects.toThrow(
      DynamoeError,
    );
    await expect(MoELayer.load({ ...weights, up: [new Uint16Array(64), new Uint16Array(64)] })).rejects.toMatchObject({
      code: 'ERR_DYNAMOE_DTYPE',
    });
  });
});
