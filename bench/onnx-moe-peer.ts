// ONNX Runtime peer for the MoE-layer benchmark: the same layer as one ONNX graph (router MatMul, then ORT's fused
// CPU `com.microsoft.MoE` op with interleaved SwiGLU), run by onnxruntime-node from bench/peers. ORT's CPU MoE op
// selects top-k (no top-p), so it is compared on top-k policies only.
import { MoELayerWeights } from '../lib';
import { importPeer } from './peer-loader';

// The parts of onnxruntime-node used here (it is installed under bench/peers, outside this package's types).
interface OrtModule {
  InferenceSession: {
    create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession>;
  };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
  release(): Promise<void>;
}

interface OnnxProtoModule {
  onnx: {
    ModelProto: { encode(message: unknown): { finish(): Uint8Array } };
    TensorProto: { DataType: { FLOAT: number } };
    AttributeProto: { AttributeType: { INT: number; STRING: number } };
  };
}

export interface OrtMoeLayer {
  /** One forward: [tokens][hidden] in, [tokens][hidden] out. */
  forward(x: Float32Array, tokens: number): Promise<Float32Array>;
  release(): Promise<void>;
}

// One expert tensor of the concatenated [experts][rows][cols] weights (the synthetic weights are never per-expert).
function concatenated(data: MoELayerWeights['gate']): Float32Array {
  if (!(data instanceof Float32Array)) throw new Error('the ONNX peer takes f32 weights as one Float32Array');
  return data;
}

// fc1 = [E][2F][H]: gate row f at 2f, up row f at 2f + 1 (swiglu_fusion = 1, "interleaved").
function interleavedGateUp(weights: MoELayerWeights): Float32Array {
  const { experts, ffn, hidden } = weights;
  const gate = concatenated(weights.gate);
  const up = concatenated(weights.up);
  const fc1 = new Float32Array(experts * 2 * ffn * hidden);
  for (let e = 0; e < experts; e++) {
    for (let f = 0; f < ffn; f++) {
      const source = (e * ffn + f) * hidden;
      fc1.set(gate.subarray(source, source + hidden), (e * 2 * ffn + 2 * f) * hidden);
      fc1.set(up.subarray(source, source + hidden), (e * 2 * ffn + 2 * f + 1) * hidden);
    }
  }
  return fc1;
}

// router [E][H] -> [H][E], the right operand of MatMul(x, router).
function transposed(router: Float32Array, experts: number, hidden: number): Float32Array {
  const out = new Float32Array(hidden * experts);
  for (let e = 0; e < experts; e++) for (let h = 0; h < hidden; h++) out[h * experts + e] = router[e * hidden + h];
  return out;
}

function modelBytes(proto: OnnxProtoModule, weights: MoELayerWeights, k: number): Uint8Array {
  const { onnx } = proto;
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const { experts, ffn, hidden } = weights;
  const tensor = (name: string, dims: number[], data: Float32Array) => ({
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
  const valueInfo = (name: string) => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'tokens' }, { dimValue: hidden }] } } },
  });
  const INT = onnx.AttributeProto.AttributeType.INT;
  const STRING = onnx.AttributeProto.AttributeType.STRING;
  return onnx.ModelProto.encode({
    irVersion: 8,
    producerName: 'dynamoe-bench',
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'moe_layer',
      input: [valueInfo('x')],
      output: [valueInfo('y')],
      initializer: [
        tensor('router', [hidden, experts], transposed(weights.router, experts, hidden)),
        tensor('fc1', [experts, 2 * ffn, hidden], interleavedGateUp(weights)),
        tensor('fc2', [experts, hidden, ffn], concatenated(weights.down)),
      ],
      node: [
        { opType: 'MatMul', input: ['x', 'router'], output: ['logits'], name: 'router' },
        {
          opType: 'MoE',
          domain: 'com.microsoft',
          name: 'moe',
          input: ['x', 'logits', 'fc1', '', 'fc2'],
          output: ['y'],
          attribute: [
            { name: 'activation_type', type: STRING, s: new TextEncoder().encode('swiglu') },
            { name: 'swiglu_fusion', type: INT, i: 1 },
            { name: 'k', type: INT, i: k },
            { name: 'normalize_routing_weights', type: INT, i: 1 },
          ],
        },
      ],
    },
  }).finish();
}

/**
 * Builds the ORT session for f32 `weights` with top-`k` routing (renormalised over the k, as Mixtral), or returns
 * why it cannot (the peer is not installed).
 */
export async function createOrtMoeLayer(
  weights: MoELayerWeights,
  k: number,
  threads: number,
): Promise<OrtMoeLayer | { missing: string }> {
  const ort = await importPeer<OrtModule>('onnxruntime-node');
  if ('missing' in ort) return ort;
  const proto = await importPeer<OnnxProtoModule>('onnx-proto');
  if ('missing' in proto) return proto;
  const session = await ort.module.InferenceSession.create(modelBytes(proto.module, weights, k), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // ORT's pool threads spin after each run by default, taking the cores from the dynamoe run that follows in the
    // interleaved timing; idle threads that sleep make the comparison fair both ways.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const { Tensor } = ort.module;
  return {
    async forward(x, tokens) {
      const result = await session.run({ x: new Tensor('float32', x, [tokens, weights.hidden]) });
      return result.y.data as Float32Array;
    },
    release: () => session.release(),
  };
}
