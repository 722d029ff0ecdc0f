// The dynamic-routing toolkit: scoring, policy lists, text windows, sweeps, the budget solver, calibration, policy
// files and per-request policies, on tiny checkpoints (the CLI commands are run in a child process at the end).
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { loadModel, Model, ModelForwardResult, parsePolicy, policyLabel } from '../lib';
import { solveBudget } from '../lib/toolkit/budget-solver';
import { calibrate } from '../lib/toolkit/calibrate';
import { evaluatePolicy, expertFlopsPerExpert } from '../lib/toolkit/evaluate-policy';
import { readPolicyFile, writePolicyFile } from '../lib/policy/policy-file';
import { parsePolicyList } from '../lib/policy/policy-list';
import { runSweep } from '../lib/toolkit/sweep';
import { sweepChart } from '../lib/toolkit/sweep-chart';
import { textWindows } from '../lib/toolkit/text-windows';
import { makeTinyModel, tempDir, writeHfCheckpoint } from './model-fixtures';
import { Rng } from './reference/random';

const run = promisify(execFile);
const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const TEXT =
  'Harder tasks need more experts. The router keeps adding experts until their probability passes p; ' +
  'easy tokens use one expert and hard ones use several, so compute follows difficulty.';

let temp: ReturnType<typeof tempDir>;
let mixtral: Model; // 2 MoE layers, 4 experts, trained top-2 renormalised
let qwen: Model; // MoE layers 0 and 2 around a dense layer 1
let mixtralDir: string;
beforeAll(async () => {
  temp = tempDir('dynamoe-toolkit-');
  mixtralDir = path.join(temp.dir, 'mixtral');
  await writeHfCheckpoint(mixtralDir, makeTinyModel('mixtral', 5), 'f32');
  await writeHfCheckpoint(path.join(temp.dir, 'qwen'), makeTinyModel('qwen2-moe', 6), 'f32');
  mixtral = await loadModel(mixtralDir);
  qwen = await loadModel(path.join(temp.dir, 'qwen'));
});
afterAll(() => {
  mixtral.dispose();
  qwen.dispose();
  temp.cleanup();
});

async function codeOf(work: () => unknown): Promise<string | undefined> {
  try {
    await work();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

/** log softmax(row)[target] in float64, from the logits forward() returns. */
function logProbFromLogits(logits: Float32Array, vocab: number, row: number, target: number): number {
  const values = logits.subarray(row * vocab, (row + 1) * vocab);
  const max = values.reduce((m, v) => Math.max(m, v), -Infinity);
  const sum = values.reduce((s, v) => s + Math.exp(v - max), 0);
  return values[target] - max - Math.log(sum);
}

describe('Model.score', () => {
  test('log-probabilities equal the log-softmax of forward() logits at the next token, for several policies', async () => {
    const tokens = [1, 30, 31, 32, 33, 34, 50, 60, 70, 2, 9, 44];
    for (const policy of [undefined, 'top-k:1', 'top-p:0.4', 'threshold:0.2']) {
      const { logits } = await mixtral.forward(tokens, { policy });
      const scored = await mixtral.score(tokens, { policy });
      expect(scored.logProbs.length).toBe(tokens.length - 1);
      let nll = 0;
      for (let t = 0; t + 1 < tokens.length; t++) {
        const expected = logProbFromLogits(logits, mixtral.spec.vocab, t, tokens[t + 1]);
        expect(Math.abs(scored.logProbs[t] - expected)).toBeLessThan(1e-9);
        nll -= expected;
      }
      expect(scored.nll).toBeCloseTo(nll, 9);
      expect(scored.perplexity).toBeCloseTo(Math.exp(nll / (tokens.length - 1)), 6);
    }
  });

  test('statistics come back with the call, and bad input is refused with a code', async () => {
    const { stats } = await mixtral.score([1, 5, 6, 7], { policy: 'top-k:1', stats: true });
    expect(stats!.expertsPerToken).toBe(1);
    expect(stats!.tokens).toBe(4);
    expect(await codeOf(() => mixtral.score([1]))).toBe('ERR_DYNAMOE_SHAPE');
    expect(await codeOf(() => mixtral.score([1, mixtral.spec.vocab]))).toBe('ERR_DYNAMOE_VALUE');
    expect(await codeOf(() => mixtral.score([1, 2], { policy: 'top-k:9' }))).toBe('ERR_DYNAMOE_POLICY');
  });
});

describe('policy lists and labels', () => {
  test('ranges expand with both ends, in order, without floating-point drift', () => {
    const labels = parsePolicyList('top-k:1, top-k:2+norm,top-p:0.2..0.5:0.1,threshold:0.05..0.15:0.05,top-k:1..3')
      .map(policyLabel);
    expect(labels).toEqual([
      'top-k:1', 'top-k:2+norm', 'top-p:0.2', 'top-p:0.3', 'top-p:0.4', 'top-p:0.5',
      'threshold:0.05', 'threshold:0.1', 'threshold:0.15', 'top-k:1', 'top-k:2', 'top-k:3',
    ]);
    expect(parsePolicyList('top-p:0.3..0.5+norm').map(policyLabel)).toEqual(['top-p:0.3+norm', 'top-p:0.4+norm', 'top-p:0.5+norm']);
  });

  test('labels show renormalisation and scale, and the short form round-trips', () => {
    expect(policyLabel({ kind: 'top-k', k: 6, normalize: true, scale: 2.5 })).toBe('top-k:6+norm*2.5');
    expect(parsePolicy('top-p:0.4+norm')).toEqual({ kind: 'top-p', p: 0.4, normalize: true });
    expect(parsePolicy('top-p:0.4')).toEqual({ kind: 'top-p', p: 0.4 });
    expect(mixtral.info.defaultPolicy).toEqual(['top-k:2+norm', 'top-k:2+norm']);
  });

  test.each(['', 'top-p..0.8', 'top-p:0.8..0.2', 'top-p:0.1..0.9:0', 'top-p:a..b', 'top-p:0..1:0.0001', 'best:1', 'top-p:0.2..'])(
    'the list %p is refused with ERR_DYNAMOE_POLICY',
    async (text) => expect(await codeOf(() => parsePolicyList(text))).toBe('ERR_DYNAMOE_POLICY'),
  );
});

describe('text windows', () => {
  test('every token is predicted once, each window starts with BOS and fits the window size', () => {
    const ids = mixtral.tokenizer.encode(TEXT, { addSpecialTokens: false });
    const bos = mixtral.tokenizer.bosTokenId;
    expect(bos).not.toBeNull();
    for (const window of [2, 3, 16, 64, 1000]) {
      const size = Math.min(window, mixtral.spec.maxContext);
      const windows = textWindows(mixtral.tokenizer, TEXT, mixtral.spec.maxContext, { window: size });
      expect(windows.every((w) => w.length >= 2 && w.length <= size && w[0] === bos)).toBe(true);
      expect(Array.from(windows.flatMap((w) => Array.from(w.subarray(1))))).toEqual(Array.from(ids));
    }
    const cut = textWindows(mixtral.tokenizer, TEXT, mixtral.spec.maxContext, { window: 8, maxTokens: 10 });
    expect(cut.reduce((n, w) => n + w.length - 1, 0)).toBe(10);
  });

  test('a window outside [2, context] or a text with no tokens is refused', async () => {
    const context = mixtral.spec.maxContext;
    expect(await codeOf(() => textWindows(mixtral.tokenizer, TEXT, context, { window: 1 }))).toBe('ERR_DYNAMOE_VALUE');
    expect(await codeOf(() => textWindows(mixtral.tokenizer, TEXT, context, { window: context + 1 }))).toBe('ERR_DYNAMOE_VALUE');
    expect(await codeOf(() => textWindows(mixtral.tokenizer, '', context))).toBe('ERR_DYNAMOE_VALUE');
  });
});

describe('evaluatePolicy and runSweep', () => {
  test('perplexity is the mean NLL of the windows scored one by one; FLOPs follow experts per token', async () => {
    const windows = textWindows(mixtral.tokenizer, TEXT, mixtral.spec.maxContext, { window: 24 });
    const evaluation = await evaluatePolicy(mixtral, windows, 'top-p:0.5');
    let nll = 0;
    let predicted = 0;
    for (const w of windows) {
      const s = await mixtral.score(w, { policy: 'top-p:0.5' });
      nll += s.nll;
      predicted += w.length - 1;
    }
    expect(evaluation.predictedTokens).toBe(predicted);
    expect(evaluation.nll).toBeCloseTo(nll / predicted, 10);
    expect(evaluation.perplexity).toBeCloseTo(Math.exp(nll / predicted), 8);
    expect(evaluation.stats.tokens).toBe(windows.reduce((n, w) => n + w.length, 0));
    const perExpert = expertFlopsPerExpert(mixtral);
    expect(perExpert).toEqual([2 * 3 * 64 * 48, 2 * 3 * 64 * 48]);
    const expected = evaluation.stats.layers.reduce((s, l, i) => s + l.expertsPerToken * perExpert[i], 0);
    expect(evaluation.expertFlopsPerToken).toBeCloseTo(expected, 6);
    expect(evaluation.tokensPerSecond).toBeGreaterThan(0);
  });

  test('a sweep measures the trained policy as its reference; top-1 saves half of a top-2 model’s expert FLOPs', async () => {
    const windows = textWindows(mixtral.tokenizer, TEXT, mixtral.spec.maxContext, { window: 32 });
    const progress: number[] = [];
    const report = await runSweep(mixtral, windows, parsePolicyList('top-k:1,top-k:2+norm,top-p:0.3..0.9:0.3'), (d) =>
      progress.push(d),
    );
    expect(progress).toEqual(Array.from({ length: windows.length * 6 }, (_, i) => i + 1));
    expect(report.trained.policy).toBe('top-k:2+norm');
    expect(report.trained.perplexityChange).toBe(0);
    expect(report.trained.expertFlopsSaved).toBe(0);
    expect(report.points.map((p) => p.policy)).toEqual(['top-k:1', 'top-k:2+norm', 'top-p:0.3', 'top-p:0.6', 'top-p:0.9']);
    const [top1, top2] = report.points;
    expect(top1.stats.expertsPerToken).toBe(1);
    expect(top1.expertFlopsSaved).toBeCloseTo(0.5, 12);
    // The trained policy, named explicitly, gives the very same numbers (deterministic CPU math).
    expect(top2.perplexity).toBe(report.trained.perplexity);
    const topP = report.points.slice(2).map((p) => p.stats.expertsPerToken);
    expect(topP[0]).toBeLessThanOrEqual(topP[1]);
    expect(topP[1]).toBeLessThanOrEqual(topP[2]);
    expect(report.model.moeLayers).toEqual([0, 1]);

    const svg = sweepChart(report);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<circle [^>]*r="4.5"/g)!.length).toBe(report.points.length);
    expect(svg.match(/<text/g)!.length).toBe(svg.match(/<\/text>/g)!.length);
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
  });
});

describe('solveBudget', () => {
  test('finds the exact optimum of random multiple-choice budgets (checked by enumeration)', () => {
    const rng = new Rng(77);
    for (let trial = 0; trial < 200; trial++) {
      const layers = Array.from({ length: rng.int(1, 4) }, () => {
        const options = rng.int(1, 5);
        return {
          cost: Array.from({ length: options }, () => rng.uniform(1, 4)),
          loss: Array.from({ length: options }, () => rng.uniform(-0.3, 0.7)),
        };
      });
      const budget = layers.length * rng.uniform(1, 4);
      let best: { loss: number; choice: number[] } | null = null;
      const visit = (i: number, cost: number, loss: number, choice: number[]) => {
        if (cost > budget) return;
        if (i === layers.length) {
          if (!best || loss < best.loss) best = { loss, choice };
          return;
        }
        layers[i].cost.forEach((c, o) => visit(i + 1, cost + c, loss + layers[i].loss[o], [...choice, o]));
      };
      visit(0, 0, 0, []);
      const choice = solveBudget(layers, budget);
      if (best === null) {
        expect(choice).toBeNull();
        continue;
      }
      expect(choice).not.toBeNull();
      const cost = choice!.reduce((s, o, i) => s + layers[i].cost[o], 0);
      const loss = choice!.reduce((s, o, i) => s + layers[i].loss[o], 0);
      expect(cost).toBeLessThanOrEqual(budget);
      expect(loss).toBeCloseTo((best as { loss: number }).loss, 12);
    }
  });
});

describe('calibrate and policy files', () => {
  test('per-layer thresholds meet the budget, are reproducible, and beat or equal the best uniform p', async () => {
    const windows = textWindows(qwen.tokenizer, TEXT, qwen.spec.maxContext, { window: 40 });
    const grid = [0.2, 0.4, 0.6, 0.8];
    const result = await calibrate(qwen, windows, { expertsPerToken: 1.5, grid });
    expect(result.layers).toEqual([0, 2]);
    expect(result.policies).toHaveLength(2);
    expect(result.policies.every((p) => p.kind === 'top-p' && grid.includes(p.p))).toBe(true);
    expect(result.chosen.expertsPerToken).toBeLessThanOrEqual(1.5);
    if (result.uniform) expect(result.chosen.perplexity).toBeLessThanOrEqual(result.uniform.perplexity);
    expect(result.sensitivity.map((s) => s.nllIncrease[grid.length - 1])).toEqual([0, 0]);
    // Re-measuring the chosen policies gives exactly what calibrate reported.
    const again = await evaluatePolicy(qwen, windows, result.policies);
    expect(again.perplexity).toBe(result.chosen.perplexity);
    expect(again.stats.expertsPerToken).toBe(result.chosen.expertsPerToken);

    const file = path.join(temp.dir, 'qwen-policy.json');
    await writePolicyFile(file, result.policies, result.layers, { budget: 1.5 });
    const saved = await readPolicyFile(file);
    expect(saved.policies).toEqual(result.policies);
    const { stats } = await qwen.forward([1, 20, 21, 22, 23], { policy: saved, stats: true });
    expect(stats!.layers.map((l) => l.policy)).toEqual(result.policies.map(policyLabel));
    const generation = qwen.generate([1, 20, 21], { maxTokens: 3, policy: saved });
    for await (const token of generation) expect(token.id).toBeGreaterThanOrEqual(0);
    expect(generation.summary!.stats.layers.map((l) => l.policy)).toEqual(result.policies.map(policyLabel));
    // A file made for other layers is refused by name.
    expect(await codeOf(() => mixtral.forward([1, 2], { policy: saved }))).toBe('ERR_DYNAMOE_POLICY');
  });

  test('budgets the grid cannot reach and bad grids are refused', async () => {
    const windows = textWindows(qwen.tokenizer, TEXT, qwen.spec.maxContext, { window: 40, maxTokens: 20 });
    expect(await codeOf(() => calibrate(qwen, windows, { expertsPerToken: 0.5 }))).toBe('ERR_DYNAMOE_VALUE');
    expect(await codeOf(() => calibrate(qwen, windows, { expertsPerToken: 1.5, grid: [0.5, 0.3] }))).toBe('ERR_DYNAMOE_VALUE');
    expect(await codeOf(() => calibrate(qwen, windows, { expertsPerToken: 1.5, grid: [0.5] }))).toBe('ERR_DYNAMOE_VALUE');
    // p = 0.9 keeps at least 2 experts on almost every token of a 4-expert router: 1.0 is out of reach.
    expect(await codeOf(() => calibrate(qwen, windows, { expertsPerToken: 1, grid: [0.9, 0.95] }))).toBe('ERR_DYNAMOE_VALUE');
  });

  test('broken policy files are refused with IO or FORMAT codes', async () => {
    const bad = (name: string, content: string) => {
      const file = path.join(temp.dir, name);
      fs.writeFileSync(file, content);
      return file;
    };
    expect(await codeOf(() => readPolicyFile(path.join(temp.dir, 'missing.json')))).toBe('ERR_DYNAMOE_IO');
    for (const [name, content] of [
      ['not-json.json', '{'],
      ['array.json', '[]'],
      ['format.json', '{"format":"other","version":1,"policies":[{}],"layers":[0]}'],
      ['version.json', '{"format":"dynamoe-policy","version":2,"policies":[{}],"layers":[0]}'],
      ['empty.json', '{"format":"dynamoe-policy","version":1,"policies":[],"layers":[]}'],
      ['layers.json', '{"format":"dynamoe-policy","version":1,"policies":[{"kind":"top-p","p":0.4}],"layers":[0,1]}'],
      ['strings.json', '{"format":"dynamoe-policy","version":1,"policies":["top-p:0.4"],"layers":[0]}'],
    ]) {
      expect([name, await codeOf(() => readPolicyFile(bad(name, content)))]).toEqual([name, 'ERR_DYNAMOE_FORMAT']);
    }
    const wrongPolicy = bad('p.json', '{"format":"dynamoe-policy","version":1,"policies":[{"kind":"top-p","p":7},{"kind":"top-p","p":0.4}],"layers":[0,1]}');
    const file = await readPolicyFile(wrongPolicy);
    expect(await codeOf(() => mixtral.forward([1, 2], { policy: file }))).toBe('ERR_DYNAMOE_POLICY');
  });
});

test('concurrent calls with different policies each get their own statistics and logits', async () => {
  const tokens = [1, 40, 41, 42, 43, 44, 45];
  const policies = ['top-k:1', 'top-p:0.3', 'top-p:0.9', 'top-k:4', 'threshold:0.25'];
  const alone: ModelForwardResult[] = [];
  for (const policy of policies) alone.push(await mixtral.forward(tokens, { policy, stats: true }));
  const together = await Promise.all(policies.map((policy) => mixtral.forward(tokens, { policy, stats: true })));
  together.forEach((r, i) => {
    expect(r.stats).toEqual(alone[i].stats);
    expect(r.logits).toEqual(alone[i].logits);
    expect(r.stats!.layers[0].policy).toBe(policyLabel(parsePolicy(policies[i])));
  });
});

test('a comma-separated policy string gives each MoE layer its own; stop must be a list of strings', async () => {
  const { stats } = await mixtral.forward([1, 5, 6], { policy: 'top-k:1, top-k:3', stats: true });
  expect(stats!.layers.map((l) => [l.policy, l.expertsPerToken])).toEqual([['top-k:1', 1], ['top-k:3', 3]]);
  expect(await codeOf(() => mixtral.forward([1, 5], { policy: 'top-k:1,top-k:1,top-k:1' }))).toBe('ERR_DYNAMOE_POLICY');
  for (const stop of ['\n', [1], [null], 5]) {
    expect(await codeOf(() => mixtral.generate([1], { stop: stop as unknown as string[] }))).toBe('ERR_DYNAMOE_TYPE');
  }
});

test('a generation reports the statistics of the steps it ran, even when aborted', async () => {
  const controller = new AbortController();
  const generation = mixtral.generate([1, 40, 41, 42], { maxTokens: 50, policy: 'top-k:1', signal: controller.signal });
  expect(generation.stats).toBeUndefined();
  let seen = 0;
  const failure = await (async () => {
    for await (const token of generation) {
      expect(token.id).toBeGreaterThanOrEqual(0);
      if (++seen === 3) controller.abort();
    }
  })().then(() => null, (error) => error);
  expect(failure?.code).toBe('ERR_DYNAMOE_ABORTED');
  expect(generation.summary).toBeUndefined();
  const stats = generation.stats!;
  // The prompt step, then one step per generated token until the abort was seen.
  expect(stats.tokens).toBeGreaterThanOrEqual(4 + 3);
  expect(stats.tokens).toBeLessThan(4 + 50);
  expect(stats.expertsPerToken).toBe(1);
});

describe('CLI sweep, calibrate and run --policy file', () => {
  test('sweep writes a JSON report and an SVG chart; calibrate writes a policy file that run accepts', async () => {
    const json = path.join(temp.dir, 'sweep.json');
    const svg = path.join(temp.dir, 'sweep.svg');
    const textFile = path.join(temp.dir, 'text.txt');
    fs.writeFileSync(textFile, TEXT);
    const sweep = await run(process.execPath, [CLI, 'sweep', mixtralDir, '--text', textFile, '--policies',
      'top-k:1,top-p:0.2..0.6:0.2', '--window', '32', '--json', json, '--svg', svg]);
    expect(sweep.stdout).toMatch(/top-k:2\+norm \(trained\)/);
    expect(sweep.stdout).toMatch(/top-k:1 .* 100\/0\/0\/0 +50\.0%/);
    const report = JSON.parse(fs.readFileSync(json, 'utf8'));
    expect(report.points.map((p: { policy: string }) => p.policy)).toEqual(['top-k:1', 'top-p:0.2', 'top-p:0.4', 'top-p:0.6']);
    expect(report.text.source).toBe(textFile);
    expect(fs.readFileSync(svg, 'utf8')).toMatch(/^<svg/);

    const policyFile = path.join(temp.dir, 'calibrated.json');
    const cal = await run(process.execPath, [CLI, 'calibrate', mixtralDir, '--text', textFile, '--experts-per-token',
      '1.5', '--grid', '0.2..0.8:0.3', '--out', policyFile]);
    expect(cal.stdout).toMatch(/budget +1\.5 experts\/token/);
    const saved = await readPolicyFile(policyFile);
    expect(saved.layers).toEqual([0, 1]);
    const generated = await run(process.execPath, [CLI, 'run', mixtralDir, '--prompt', 'hello', '--max-tokens', '3',
      '--policy', policyFile]);
    expect(generated.stderr).toContain(`policy          ${saved.policies.map(policyLabel).join(',')}`);
  });

  test('missing --text, a bad budget and an unreadable text fail with a message and exit code 1', async () => {
    for (const args of [
      ['sweep', mixtralDir],
      ['calibrate', mixtralDir, '--text', __filename],
      ['calibrate', mixtralDir, '--text', __filename, '--experts-per-token', 'x'],
      ['sweep', mixtralDir, '--text', path.join(temp.dir, 'nope.txt')],
      ['sweep', '--demo', mixtralDir],
    ]) {
      const failure = await run(process.execPath, [CLI, ...args]).then(() => null, (e) => e);
      expect(failure).not.toBeNull();
      expect(failure.code).toBe(1);
      expect(failure.stderr).toMatch(/^dynamoe: ERR_DYNAMOE_(VALUE|IO):/m);
    }
  });
});
