// Helpers the whole-model tests share: a typed array's bytes (for bit-identity checks), a prefill followed by
// one-token decode steps on a fresh session, as generation runs them, and the row-relative distance of two devices'
// logits.
import type { Model } from '../lib';

/** The bytes of a typed array, to compare results bit for bit. */
export function bits(array: Float32Array | Float64Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

/** Logits of every position: the first `prefill` tokens in one step, then one decode step per token. */
export async function prefillThenDecode(loaded: Model, tokens: readonly number[], prefill: number): Promise<Float32Array> {
  const session = loaded.createSession(tokens.length);
  try {
    const policies = loaded.policies(undefined);
    const out = [await loaded.step(session, Int32Array.from(tokens.slice(0, prefill)), policies, false, false)];
    for (const id of tokens.slice(prefill)) out.push(await loaded.step(session, Int32Array.of(id), policies, false, false));
    return Float32Array.from(out.flatMap((s) => Array.from(s.logits)));
  } finally {
    session.dispose();
  }
}

/** Largest |cuda - cpu| of each row over that row's largest |cpu|: the worst row. */
export function worstRowError(cuda: Float32Array, cpu: Float32Array, vocab: number): number {
  expect(cuda.length).toBe(cpu.length);
  let worst = 0;
  for (let row = 0; row * vocab < cpu.length; row++) {
    let scale = 0;
    let diff = 0;
    for (let i = row * vocab; i < (row + 1) * vocab; i++) {
      scale = Math.max(scale, Math.abs(cpu[i]));
      diff = Math.max(diff, Math.abs(cuda[i] - cpu[i]));
    }
    expect(Number.isFinite(diff)).toBe(true);
    worst = Math.max(worst, diff / Math.max(scale, 1e-30));
  }
  return worst;
}
