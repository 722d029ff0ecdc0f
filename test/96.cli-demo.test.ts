// The demo (runDemo) on the synthetic model, the synthetic model itself, and the compiled CLI (the default demo on
// the shipped trained model, inspect, run, errors) on a tiny checkpoint.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { DEFAULT_DEMO, DemoOptions, runDemo } from '../lib/cli/demo';
import { createSyntheticModel } from '../lib/model/synthetic-model';
import { makeTinyModel, tempDir, writeHfCheckpoint } from './model-fixtures';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const SMALL = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 32 };
const TOKENS = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33];
/** A prompt long enough for the synthetic routers' per-layer spread to show. */
const SYNTHETIC_PROMPT = 'Harder tasks need more experts: a router that picks experts until their probability passes p.';

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60000 });
}

describe('runDemo', () => {
  test('prints per-policy speed, experts per token and generated ids', async () => {
    const lines: string[] = [];
    const options: DemoOptions = { ...DEFAULT_DEMO, ...SMALL, synthetic: true, tokens: 6, repeats: 1, policies: ['top-k:2', 'top-p:0.4'] };
    const results = await runDemo(options, (line) => lines.push(line));
    const text = lines.join('\n');

    expect(results.map((r) => r.policy)).toEqual(['top-k:2', 'top-p:0.4']);
    for (const r of results) {
      expect(r.generatedTokens).toBe(6);
      expect(r.tokenIds).toHaveLength(6);
      expect(r.expertsPerTokenByLayer).toHaveLength(SMALL.layers);
      expect(r.prefillTokensPerSecond).toBeGreaterThan(0);
      expect(r.decodeTokensPerSecond).toBeGreaterThan(0);
    }
    // Each policy's block: its name, prefill and decode rates, experts per token (mean, per layer), ids, text.
    const blocks = text.split('\npolicy ').slice(1);
    expect(blocks).toHaveLength(2);
    for (const [i, block] of blocks.entries()) {
      expect(block.startsWith(results[i].policy)).toBe(true);
      expect(block).toMatch(/prefill\s+\d+ tokens in [\d.]+ ms = \d+ tokens\/s/);
      expect(block).toMatch(/decode\s+5 tokens in [\d.]+ ms = \d+ tokens\/s/);
      expect(block).toContain(`token ids      ${results[i].tokenIds.join(' ')}`);
      expect(block).toMatch(/text\s+"/);
      const mean = Number(/experts\/token\s+([\d.]+) mean/.exec(block)?.[1]);
      const layers = (/per layer\s+([\d. ]+)/.exec(block)?.[1] ?? '').trim().split(' ').map(Number);
      expect(layers).toHaveLength(SMALL.layers);
      for (const value of [mean, ...layers]) {
        expect(value).toBeGreaterThanOrEqual(1);
        expect(value).toBeLessThanOrEqual(SMALL.experts);
      }
    }
    expect(blocks[0]).toContain('experts/token  2.00 mean');
    expect(blocks[0]).toContain('per layer      2.00 2.00');
    expect(text).toMatch(/top-p:0\.4 vs top-k:2: expert pairs [\d.]+x \([\d.]+ vs 2\.00 experts\/token\)/);
  });
});

describe('createSyntheticModel', () => {
  test('the same seed gives the same logits; another seed different ones', async () => {
    const logits = async (seed: number) => {
      const model = await createSyntheticModel({ ...SMALL, seed });
      try {
        return (await model.forward(TOKENS)).logits;
      } finally {
        model.dispose();
      }
    };
    const a = await logits(7);
    const b = await logits(7);
    const c = await logits(8);
    expect(a.length).toBe(TOKENS.length * 259);
    expect(a.every(Number.isFinite)).toBe(true);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expect(Buffer.from(c.buffer).equals(Buffer.from(a.buffer))).toBe(false);
  });

  test('top-p:0.4 uses a varying number of experts per token, more in the lower layer', async () => {
    const model = await createSyntheticModel(SMALL);
    try {
      const prompt = model.tokenizer.encode(SYNTHETIC_PROMPT);
      const { stats } = await model.forward(prompt, { policy: 'top-p:0.4', stats: true });
      const layers = stats!.layers.map((l) => l.expertsPerToken);
      expect(stats!.expertsPerToken).toBeGreaterThan(1);
      expect(stats!.expertsPerToken).toBeLessThan(SMALL.experts);
      expect(layers[0]).toBeGreaterThan(layers[layers.length - 1]);
      // Within a layer, tokens use different numbers of experts.
      for (const l of stats!.layers) expect(l.histogram.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
      const topK = (await model.forward(prompt, { stats: true })).stats!;
      expect(topK.layers.map((l) => l.policy)).toEqual(layers.map(() => 'top-k:2+norm'));
      expect(topK.expertsPerToken).toBe(2);
    } finally {
      model.dispose();
    }
  });

  test('the tokenizer is byte-level with BOS, EOS and PAD after the bytes', async () => {
    const model = await createSyntheticModel({ ...SMALL, layers: 1 });
    try {
      const t = model.tokenizer;
      expect(t.vocabSize).toBe(259);
      expect(t.bosTokenId).toBe(256);
      expect(t.eosTokenIds).toEqual([257]);
      expect(Array.from(t.encode('Hé!'))).toEqual([256, 72, 0xc3, 0xa9, 33]);
      expect(t.decode([72, 0xc3, 0xa9, 33])).toBe('Hé!');
    } finally {
      model.dispose();
    }
  });
});

describe('dynamoe CLI', () => {
  let temp: ReturnType<typeof tempDir>;
  let dir: string;
  beforeAll(async () => {
    temp = tempDir('dynamoe-cli-');
    dir = path.join(temp.dir, 'tiny-mixtral');
    await writeHfCheckpoint(dir, makeTinyModel('mixtral', 3));
  });
  afterAll(() => temp.cleanup());

  test('inspect prints the architecture, sizes, policy and tokenizer', () => {
    const r = cli('inspect', dir);
    expect(r.stderr).toContain('done in');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/architecture\s+mixtral/);
    expect(r.stdout).toMatch(/dtype\s+f32/);
    expect(r.stdout).toMatch(/layers\s+2 \(2 MoE, 0 dense\)/);
    expect(r.stdout).toMatch(/0-1\s+moe, 4 experts x ffn 48/);
    expect(r.stdout).toMatch(/hidden\s+64, heads 4, kv heads 2, head dim 16/);
    expect(r.stdout).toMatch(/vocab\s+277/);
    expect(r.stdout).toMatch(/default policy\s+top-k:2\+norm \(every layer\)/);
    expect(r.stdout).toMatch(/weights\s+[\d.]+ (KiB|MiB)/);
    expect(r.stdout).toMatch(/tokenizer\s+277 tokens, bos 1, eos 2, chat template: yes/);
  });

  test('run streams text to stdout and a routing summary to stderr', () => {
    const r = cli('run', dir, '--prompt', 'hi', '--max-tokens', '5');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/loading .* done in [\d.]+ s/);
    expect(r.stderr).toMatch(/policy\s+top-k:2/);
    expect(r.stderr).toMatch(/experts\/token\s+2\.00 mean; per MoE layer: 2\.00 2\.00/);
    expect(r.stderr).toMatch(/tokens\s+\d+ prompt \+ [1-5] generated \(stopped: (maxTokens|eos)\)/);
    expect(r.stderr).toMatch(/prefill\s+[\d.]+ tokens\/s/);
    expect(r.stderr).toMatch(/decode\s+([\d.]+|-) tokens\/s/);
    expect(r.stdout.endsWith('\n')).toBe(true);
  });

  test('run takes a routing policy, per layer too, and the chat template', () => {
    const r = cli('run', dir, '--prompt', 'hello', '--max-tokens', '3', '--policy', 'top-p:0.4,top-k:1', '--chat');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/policy\s+top-p:0\.4,top-k:1/);
    const perLayer = /per MoE layer: ([\d.]+) ([\d.]+)/.exec(r.stderr);
    expect(Number(perLayer?.[1])).toBeGreaterThanOrEqual(1);
    expect(perLayer?.[2]).toBe('1.00');
  });

  test('errors print "dynamoe: CODE: message" and exit with code 1', () => {
    const missing = cli('run', path.join(temp.dir, 'no-such-model'), '--prompt', 'hi');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^dynamoe: ERR_DYNAMOE_IO: .*no-such-model/m);

    const unknown = cli('run', dir, '--prompt', 'hi', '--no-such-flag');
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^dynamoe: ERR_DYNAMOE_VALUE: /m);

    const noPrompt = cli('run', dir);
    expect(noPrompt.status).toBe(1);
    expect(noPrompt.stderr).toContain('--prompt');

    const badCommand = cli('frobnicate');
    expect(badCommand.status).toBe(1);
    expect(badCommand.stderr).toContain("unknown command 'frobnicate'");
  });

  test("npm start's model: the shipped trained model writes English and its routing summary", () => {
    const r = cli('demo', '--tokens', '24', '--repeats', '1');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^dynamoe demo: dynamoe-tiny-topp, a trained dynamic-moe model \(4 layers/);
    expect(r.stdout).toMatch(/trained policy top-p:0\.4/);
    const block = r.stdout.split('\npolicy top-p:0.4')[1] ?? '';
    const mean = Number(/experts\/token\s+([\d.]+) mean/.exec(block)?.[1]);
    const layers = (/per layer\s+([\d. ]+)/.exec(block)?.[1] ?? '').trim().split(' ').map(Number);
    expect(mean).toBeGreaterThan(1);
    expect(mean).toBeLessThan(8); // the shipped model's experts per layer
    expect(layers).toHaveLength(4);
    // Greedy text of a model trained on English prose: words and spaces, not byte soup.
    const text = JSON.parse(/text\s+(".*")/.exec(block)?.[1] ?? '""') as string;
    expect(text.match(/[A-Za-z]+/g)?.length ?? 0).toBeGreaterThanOrEqual(8);
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\ufffd]/);
  });

  test('run --demo generates with the shipped model', () => {
    const r = cli('run', '--demo', '--prompt', 'In the beginning', '--max-tokens', '8');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/policy\s+top-p:0\.4/);
    expect(r.stdout).toMatch(/[A-Za-z]+/);
    expect(cli('run', '--demo', dir, '--prompt', 'hi').stderr).toContain("'run --demo' takes no model path");
  });

  test('sweep --demo measures the shipped model on its held-out text; --synthetic the random model on a paragraph', () => {
    const out = (name: string) => ['--json', path.join(temp.dir, `${name}.json`), '--svg', path.join(temp.dir, `${name}.svg`)];
    const shipped = cli('sweep', '--demo', '--max-tokens', '300', '--policies', 'top-k:1', ...out('shipped'));
    expect(shipped.status).toBe(0);
    expect(shipped.stdout).toMatch(/predicted tokens of the shipped model's held-out text/);
    expect(shipped.stdout).toMatch(/top-p:0\.4 \(trained\)/);
    const synthetic = cli('sweep', '--demo', '--synthetic', '--max-tokens', '300', '--policies', 'top-k:1', ...out('synthetic'));
    expect(synthetic.status).toBe(0);
    expect(synthetic.stdout).toMatch(/predicted tokens of the built-in demo text/);
    expect(synthetic.stdout).toMatch(/top-k:2\+norm \(trained\)/);
    const alone = cli('sweep', '--synthetic', '--text', __filename);
    expect(alone.status).toBe(1);
    expect(alone.stderr).toContain('--synthetic goes with --demo');
  });

  test('demo runs from the command line with small options', () => {
    const r = cli('demo', '--synthetic', '--layers', '1', '--hidden', '32', '--heads', '2', '--kv-heads', '1', '--experts', '4',
      '--ffn', '16', '--tokens', '3', '--repeats', '1', '--policy', 'top-k:1');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^dynamoe demo: synthetic Mixtral-style MoE \(1 layers/);
    expect(r.stdout).toContain('policy top-k:1');
    expect(r.stdout).toContain('experts/token  1.00 mean');
    const shapeWithoutSynthetic = cli('demo', '--layers', '1');
    expect(shapeWithoutSynthetic.status).toBe(1);
    expect(shapeWithoutSynthetic.stderr).toContain('--layers shapes the synthetic model: add --synthetic');
  });
});
