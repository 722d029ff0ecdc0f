// training/: a few steps of the PyTorch training code on a tiny config (train, resume, export), and the exported
// checkpoints (Dynamic-MoE top-p and Mixtral top-2 layouts) loaded by dynamoe, whose logits must match PyTorch's.
// Needs a python3 with PyTorch; without one the test is skipped with a warning (CI machines may not have it).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadModel } from '../lib';
import { tempDir } from './model-fixtures';

const SMOKE_TEST = path.join(__dirname, '..', 'training', 'test_smoke.py');

/** The first of $PYTHON, python3 and Debian's /usr/bin/python3 that imports torch, or null. */
function pythonWithTorch(): string | null {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  return candidates.find((python) => spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0) ?? null;
}

const python = pythonWithTorch();
if (python === null) {
  console.warn(
    'SKIPPED test/58.training-smoke.test.ts: no python3 with PyTorch found ($PYTHON, python3, /usr/bin/python3); ' +
      'the training code is NOT tested here (Debian: apt-get install python3-torch).',
  );
}
const withTorch = python === null ? test.skip : test;

withTorch('trains, resumes and exports checkpoints that dynamoe loads with PyTorch\'s logits', async () => {
  const temp = tempDir('dynamoe-training-');
  try {
    const run = spawnSync(python!, ['-m', 'unittest', SMOKE_TEST], {
      encoding: 'utf8',
      // One thread: the smoke run must not compete with a real training run for the cores.
      env: { ...process.env, DYNAMOE_SMOKE_OUT: temp.dir, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' },
      timeout: 240000,
    });
    expect(`${run.stderr}`).toMatch(/\nOK\s*$/);
    expect(run.status).toBe(0);
    const reference = JSON.parse(fs.readFileSync(path.join(temp.dir, 'reference.json'), 'utf8')) as Record<string, number[]>;
    for (const [name, architecture] of [['tiny-topp', 'dynamic-moe'], ['tiny-top2', 'mixtral']]) {
      const model = await loadModel(path.join(temp.dir, name));
      try {
        expect(model.spec.architecture).toBe(architecture);
        const { logits } = await model.forward(reference.ids);
        const expected = reference[name];
        expect(logits.length).toBe(expected.length);
        const worst = expected.reduce((max, v, i) => Math.max(max, Math.abs(v - logits[i])), 0);
        expect(worst).toBeLessThan(1e-3);
      } finally {
        model.dispose();
      }
    }
  } finally {
    temp.cleanup();
  }
}, 300000);
