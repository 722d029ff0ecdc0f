// PyTorch peer for the MoE-layer benchmark: bench/torch-moe-peer.py in a Python process that has torch (bf16
// matmuls on oneDNN), driven over stdin/stdout. Optional like the npm peers: without a Python that imports torch the
// bench says so and goes on. Only bf16 layers: PyTorch's f32 matmuls go to the system BLAS, which on Debian's
// python3-torch is the reference BLAS unless another is installed, and ONNX Runtime already covers f32.
import { ChildProcessByStdio, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { Readable, Writable } from 'stream';
import { MoELayerWeights } from '../lib';
import { peersDir } from './peer-loader';

export interface TorchMoeLayer {
  /** The batches later forwards pick by index ([tokens][hidden] each). */
  setInputs(batches: Float32Array[], tokens: number): Promise<void>;
  /** Runs batch `index` and resolves to the milliseconds the peer measured (the pipe round trip left out). */
  forward(index: number): Promise<{ ms: number }>;
  /** The output of batch `index`, for the agreement check. */
  output(index: number): Promise<Float32Array>;
  release(): Promise<void>;
}

// The first interpreter that imports torch: DYNAMOE_BENCH_PYTHON, else python3 on the PATH, else the system's
// (Debian's python3-torch installs for /usr/bin/python3, which a pyenv or venv python3 on the PATH would not see).
function pythonWithTorch(): string | undefined {
  const candidates = process.env.DYNAMOE_BENCH_PYTHON ? [process.env.DYNAMOE_BENCH_PYTHON] : ['python3', '/usr/bin/python3'];
  return candidates.find((python) => spawnSync(python, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0);
}

// One expert tensor group as one Float32Array (the synthetic weights are contiguous; per-expert arrays are joined).
function f32(data: MoELayerWeights['gate']): Float32Array[] {
  const parts = Array.isArray(data) ? data : [data];
  return parts.map((part) => {
    if (!(part instanceof Float32Array)) throw new Error('the PyTorch peer takes f32 source weights');
    return part;
  });
}

function writeFloats(file: string, arrays: Float32Array[]): void {
  const fd = fs.openSync(file, 'w');
  try {
    for (const array of arrays) fs.writeSync(fd, new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
  } finally {
    fs.closeSync(fd);
  }
}

/** A line-per-message conversation with the peer process: one request in flight at a time. */
class PeerProcess {
  private readonly lines: AsyncIterator<string>;
  private readonly exited: Promise<unknown>;

  constructor(private readonly child: ChildProcessByStdio<Writable, Readable, null>) {
    this.lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    this.exited = new Promise((resolve) => child.once('exit', resolve));
  }

  async read(): Promise<Record<string, unknown>> {
    const next = await this.lines.next();
    if (next.done) throw new Error('the PyTorch peer exited');
    const answer = JSON.parse(next.value) as Record<string, unknown>;
    if (typeof answer.error === 'string') throw new Error(`PyTorch peer: ${answer.error}`);
    return answer;
  }

  async ask(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.child.stdin.write(`${JSON.stringify(message)}\n`);
    return this.read();
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.exited;
  }
}

/**
 * Starts the peer on bf16 `weights` (given as f32 values, rounded to bf16 by the peer as dynamoe rounds them) with
 * top-`k` routing renormalised over the k, or returns why it cannot.
 */
export async function createTorchMoeLayer(
  weights: MoELayerWeights,
  k: number,
  threads: number,
): Promise<TorchMoeLayer | { missing: string }> {
  const python = pythonWithTorch();
  if (!python) {
    return { missing: 'no Python with torch (apt-get install python3-torch, or set DYNAMOE_BENCH_PYTHON)' };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-torch-peer-'));
  const script = path.join(path.dirname(peersDir()), 'torch-moe-peer.py');
  const peer = new PeerProcess(spawn(python, [script, String(threads)], { stdio: ['pipe', 'pipe', 'inherit'] }));
  let tokens = 0;
  try {
    await peer.read();  // the ready line
    const file = path.join(dir, 'weights.f32');
    writeFloats(file, [weights.router, ...f32(weights.gate), ...f32(weights.up), ...f32(weights.down)]);
    await peer.ask({ op: 'load', path: file, experts: weights.experts, hidden: weights.hidden, ffn: weights.ffn, k });
    fs.rmSync(file);
  } catch (error) {
    await peer.close();
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    async setInputs(batches, batchTokens) {
      const file = path.join(dir, 'inputs.f32');
      writeFloats(file, batches);
      await peer.ask({ op: 'inputs', path: file, tokens: batchTokens, count: batches.length });
      fs.rmSync(file);
      tokens = batchTokens;
    },
    async forward(index) {
      return { ms: (await peer.ask({ op: 'forward', index })).ms as number };
    },
    async output(index) {
      const file = path.join(dir, 'output.f32');
      await peer.ask({ op: 'output', index, path: file });
      const bytes = fs.readFileSync(file);
      fs.rmSync(file);
      const out = new Float32Array(tokens * weights.hidden);
      if (bytes.length !== out.byteLength) throw new Error(`PyTorch peer: ${bytes.length} output bytes, expected ${out.byteLength}`);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    },
    async release() {
      await peer.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
