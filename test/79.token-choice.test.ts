// Token choice (native/core/token_choice.h), the same statement on both backends:
// - the CPU against the float64 reference on random rows of many sizes and styles (ties, flat rows, extreme
//   values), where only a draw landing within rounding of a running sum may choose differently;
// - a grid of draws gives the kept tokens' softmax frequencies; top-k 1 and a tiny top-p are greedy;
// - the edges: one id, NaN, infinities, signed zeros, limits below the row, extreme temperatures;
// - bad choices throw with stable codes;
// - CUDA (skipped without a GPU, saying why): the GPU's tokens equal the CPU's, bit for bit, on the same rows.
import { native } from '../lib/addon/native';
import type { NativeTokenChoice } from '../lib/addon/native-surface';
import { cudaOnlySuite } from './parity/backends';
import { Rng } from './reference/random';
import { referenceChoice, referenceChoicesNear } from './reference/token-choice';

const describeCuda = cudaOnlySuite('CUDA token-choice tests (test/79)');

function choose(logits: Float32Array, vocab: number, choices: NativeTokenChoice[], device: 'cpu' | 'cuda' = 'cpu'): number[] {
  return Array.from(native().chooseTokens(logits, vocab, choices, device));
}

type Style = 'normal' | 'peaked' | 'flat' | 'ties' | 'extreme';
const STYLES: Style[] = ['normal', 'peaked', 'flat', 'ties', 'extreme'];

function randomRow(rng: Rng, vocab: number, style: Style): Float32Array {
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) {
    if (style === 'normal') row[i] = rng.normal() * 3;
    else if (style === 'peaked') row[i] = rng.normal();
    else if (style === 'flat') row[i] = rng.normal() * 1e-3;
    else if (style === 'ties') row[i] = rng.int(-2, 2);
    else row[i] = rng.pick([rng.normal() * 30, -0, 0, NaN, -Infinity, 1e30, -1e30, rng.normal()]);
  }
  if (style === 'peaked') row[rng.int(0, vocab - 1)] = 12;
  return row;
}

function randomChoice(rng: Rng, vocab: number): NativeTokenChoice {
  const limit = rng.next() < 0.7 ? vocab : rng.int(1, vocab);
  return {
    limit,
    temperature: rng.pick([0, 0.05, 0.7, 1, 2.5, 100]),
    topK: rng.pick([0, 0, 1, 2, rng.int(1, limit), limit]),
    topP: rng.pick([1, 1, 0.95, 0.4, 0.01, Math.max(rng.next(), 1e-3)]),
    uniform: rng.next(),
  };
}

/** Rows of `vocab` logits with a random choice each: the logits flat, and the choices. */
function randomCase(seed: number, vocab: number, rows: number): { logits: Float32Array; choices: NativeTokenChoice[] } {
  const rng = new Rng(seed);
  const logits = new Float32Array(rows * vocab);
  const choices: NativeTokenChoice[] = [];
  for (let r = 0; r < rows; r++) {
    logits.set(randomRow(rng, vocab, STYLES[r % STYLES.length]), r * vocab);
    choices.push(randomChoice(rng, vocab));
  }
  return { logits, choices };
}

describe('the CPU choice against the float64 reference', () => {
  test.each([1, 2, 255, 256, 257, 1000, 4099])('vocabulary %i: every token is one the reference could choose', (vocab) => {
    const rows = 60;
    const { logits, choices } = randomCase(7900 + vocab, vocab, rows);
    const tokens = choose(logits, vocab, choices);
    let exact = 0;
    for (let r = 0; r < rows; r++) {
      const row = logits.subarray(r * vocab, (r + 1) * vocab);
      expect(tokens[r]).toBeGreaterThanOrEqual(0);
      expect(tokens[r]).toBeLessThan(choices[r].limit);
      expect(referenceChoicesNear(row, choices[r])).toContain(tokens[r]);
      if (tokens[r] === referenceChoice(row, choices[r])) exact++;
    }
    expect(exact).toBeGreaterThanOrEqual(rows - 2);
  });

  test('top-p alone on a flat 40,000-id row keeps tens of thousands of ids (the ranked head grows) as the reference', () => {
    const vocab = 40000;
    const rng = new Rng(79001);
    const row = randomRow(rng, vocab, 'flat');
    for (const topP of [0.95, 0.5, 0.03]) {
      for (const uniform of [0, 0.25, 0.999]) {
        const choice = { limit: vocab, temperature: 1, topP, uniform };
        const [token] = choose(row, vocab, [choice]);
        expect(referenceChoicesNear(row, choice)).toContain(token);
      }
    }
  });
});

describe('what the draws give', () => {
  const logits = Float32Array.from([0.5, 2, 1, 2, -1]);
  const grid = (choice: Omit<NativeTokenChoice, 'uniform'>, draws = 20000): number[] => {
    const choices = Array.from({ length: draws }, (_, i) => ({ ...choice, uniform: (i + 0.5) / draws }));
    const rows = new Float32Array(draws * logits.length);
    for (let i = 0; i < draws; i++) rows.set(logits, i * logits.length);
    const counts = new Array(logits.length).fill(0);
    for (const token of choose(rows, logits.length, choices)) counts[token]++;
    return counts.map((n) => n / draws);
  };
  const softmax = (values: number[], temperature: number) => {
    const e = values.map((z) => Math.exp(z / temperature));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / total);
  };

  test('with no filter, a grid of draws gives the softmax at each temperature', () => {
    for (const temperature of [1, 0.5, 3]) {
      const expected = softmax(Array.from(logits), temperature);
      grid({ limit: 5, temperature }).forEach((f, id) => expect(Math.abs(f - expected[id])).toBeLessThan(2e-4));
    }
  });

  test('top-k and top-p keep the most likely ids (ties: lower id) and renormalise', () => {
    expect(grid({ limit: 5, temperature: 1, topK: 2 })).toEqual([0, 0.5, 0, 0.5, 0]);
    // Ranked 1, 3, 2, 0, 4: ids 1 and 3 hold 0.735 of the mass, so top-p 0.5 keeps both, 0.8 also id 2.
    expect(grid({ limit: 5, temperature: 1, topP: 0.5 })).toEqual([0, 0.5, 0, 0.5, 0]);
    const three = softmax([2, 1, 2], 1);
    const kept = grid({ limit: 5, temperature: 1, topP: 0.8 });
    expect(kept[0]).toBe(0);
    expect(kept[4]).toBe(0);
    [1, 2, 3].forEach((id, i) => expect(Math.abs(kept[id] - three[[0, 1, 2][i]])).toBeLessThan(2e-4));
    // A limit below the row: ids past it are never drawn.
    const limited = grid({ limit: 3, temperature: 1 });
    const expected = softmax([0.5, 2, 1], 1);
    expect(limited.slice(3)).toEqual([0, 0]);
    limited.slice(0, 3).forEach((f, id) => expect(Math.abs(f - expected[id])).toBeLessThan(2e-4));
  });

  test('top-k 1 and a tiny top-p are greedy (the first of equal maxima); a tiny temperature splits an exact tie', () => {
    for (const choice of [{ topK: 1 }, { topP: 0.01 }]) {
      expect(grid({ limit: 5, temperature: 1, ...choice }, 100)).toEqual([0, 1, 0, 0, 0]);
    }
    expect(grid({ limit: 5, temperature: 1e-30 }, 100)).toEqual([0, 0.5, 0, 0.5, 0]);
    expect(grid({ limit: 3, temperature: 1e-30 }, 100)).toEqual([0, 1, 0, 0, 0]);
  });
});

describe('the edges', () => {
  const one = (values: number[], choice: Partial<NativeTokenChoice>) =>
    choose(Float32Array.from(values), values.length, [{ limit: values.length, ...choice }])[0];
  const draws = (values: number[], choice: Partial<NativeTokenChoice>) =>
    new Set(Array.from({ length: 64 }, (_, i) => one(values, { ...choice, uniform: i / 64 })));

  test('greedy: the first of equal maxima; a NaN never replaces the best (one at id 0 stays, as on the host)', () => {
    expect(one([1, 3, 3, 2], {})).toBe(1);
    expect(one([1, NaN, 3, 3], {})).toBe(2);
    expect(one([NaN, 5, 7], {})).toBe(0);
    expect(one([-Infinity, -Infinity], {})).toBe(0);
    expect(one([4, 9, 1], { limit: 1 })).toBe(0);
    expect(one([4, 9, 1], { limit: 2 })).toBe(1);
  });

  test('sampling never draws a NaN; an infinite logit takes every draw; signed zeros tie by id', () => {
    for (const choice of [{ temperature: 1 }, { temperature: 1, topK: 2 }, { temperature: 1, topP: 0.9 }]) {
      expect(draws([NaN, 0, NaN, 0.5], choice)).toEqual(new Set([1, 3]));
      expect(draws([3, Infinity, 1e30, NaN], choice)).toEqual(new Set([1]));
      expect(draws([Infinity, 1, Infinity], choice)).toEqual(new Set([0, 2]));
    }
    expect(draws([-Infinity, NaN, -Infinity], { temperature: 1 })).toEqual(new Set([0, 1, 2]));
    expect(one([-0, 0, -5], { temperature: 1, topK: 1 })).toBe(0);
    expect(one([0, -0, -5], { temperature: 1, topK: 1 })).toBe(0);
    expect(draws([-0, 0, -5], { temperature: 1e-3 })).toEqual(new Set([0, 1]));
  });

  test('one id, the first and last draws, and a huge temperature', () => {
    expect(one([7], { temperature: 1, uniform: 0.99 })).toBe(0);
    expect(one([-1e30, 2, 1], { temperature: 1, uniform: 0 })).toBe(1); // the first id of positive weight
    expect(one([1, 2, 1e-3], { temperature: 1, uniform: 1 - 2 ** -53 })).toBe(2);
    const counts = new Array(4).fill(0);
    for (let i = 0; i < 400; i++) counts[one([0, 10, 20, 30], { temperature: 1e6, uniform: (i + 0.5) / 400 })]++;
    counts.forEach((n) => expect(n).toBe(100));
  });
});

test('bad choices throw with stable codes, on the call', () => {
  const logits = new Float32Array(8);
  const call = (choice: unknown, vocab = 8, values = logits) => () =>
    native().chooseTokens(values, vocab, [choice as NativeTokenChoice]);
  expect(call({ limit: 0 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' }));
  expect(call({ limit: 9 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' }));
  expect(call({ limit: 8, topK: -1 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' }));
  expect(call({ limit: 8, topK: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' }));
  expect(call({ limit: 8, temperature: -1 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
  expect(call({ limit: 8, temperature: Infinity })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
  expect(call({ limit: 8, topP: 0 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
  expect(call({ limit: 8, topP: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
  expect(call({ limit: 8, uniform: 1 })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
  expect(call({ limit: 8, uniform: NaN })).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
  expect(call('greedy')).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_TYPE' }));
  expect(call({ limit: 3 }, 3)).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' })); // 8 is not rows of 3
  expect(() => native().chooseTokens(logits, 8, [])).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' }));
});

describeCuda('the GPU chooses the CPU\'s tokens, bit for bit', () => {
  test.each([1, 255, 256, 257, 1000, 32000, 151936])('vocabulary %i, a mix of choices in one call', (vocab) => {
    const rows = vocab > 40000 ? 24 : 100; // past 16 ranked rows: several blocks of the sort (2^22 values at most)
    const { logits, choices } = randomCase(7950 + vocab, vocab, rows);
    expect(choose(logits, vocab, choices, 'cuda')).toEqual(choose(logits, vocab, choices, 'cpu'));
  });

  test('only unranked rows (no sort), and only greedy rows', () => {
    const vocab = 5000;
    const { logits, choices } = randomCase(7999, vocab, 30);
    for (const strip of [{ topK: 0, topP: 1 }, { temperature: 0 }]) {
      const stripped = choices.map((c) => ({ ...c, ...strip }));
      expect(choose(logits, vocab, stripped, 'cuda')).toEqual(choose(logits, vocab, stripped, 'cpu'));
    }
  });
});
