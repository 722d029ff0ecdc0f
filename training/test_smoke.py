"""Smoke test of the training pipeline on a tiny config: data -> tokenizer -> a few steps -> resume -> export.

Run: python3 -m unittest training/test_smoke.py (needs PyTorch). With DYNAMOE_SMOKE_OUT set, the exported
checkpoints and PyTorch's logits for a few tokens stay in that folder (test/57.trained-model.test.ts loads them
with dynamoe and compares).
"""
import json
import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bpe  # noqa: E402
import export  # noqa: E402
import train  # noqa: E402
from model import ModelConfig, MoeLm, select  # noqa: E402

TEXT = ('In the beginning God created the heaven and the earth. And the earth was without form, and void; '
        'and darkness was upon the face of the deep. And God said, Let there be light: and there was light.\n') * 20
TINY = ['--hidden', '32', '--layers', '2', '--heads', '2', '--experts', '4', '--expert-ffn', '16', '--context', '16',
        '--batch', '4', '--warmup', '2', '--eval-every', '3', '--eval-windows', '2', '--checkpoint-every', '1']


class TrainingSmokeTest(unittest.TestCase):
    def setUp(self):
        keep = os.environ.get('DYNAMOE_SMOKE_OUT')
        self.root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix='dynamoe-smoke-'))
        self.root.mkdir(parents=True, exist_ok=True)
        if not keep:
            self.addCleanup(shutil.rmtree, self.root)
        self.data = self.root / 'data'
        self.data.mkdir(exist_ok=True)
        (self.data / 'train.txt').write_text(TEXT)
        (self.data / 'heldout.txt').write_text(TEXT[:400])
        merges = bpe.train(TEXT, 300)
        (self.data / 'tokenizer.json').write_text(json.dumps(bpe.tokenizer_json(merges)))
        torch.set_num_threads(1)

    def run_steps(self, routing, out, steps):
        args = train.parse_args(['--data', str(self.data), '--out', str(out), '--routing', routing, '--steps', str(steps), *TINY])
        return train.train(args)

    def test_trains_resumes_and_exports(self):
        ids = bpe.Encoder(json.loads((self.data / 'tokenizer.json').read_text())).encode('And God said, Let there be light')
        reference = {'ids': ids}
        for routing, name in [('top-p', 'tiny-topp'), ('top-k', 'tiny-top2')]:
            out = self.root / f'run-{routing}'
            shutil.rmtree(out, ignore_errors=True)
            self.run_steps(routing, out, 3)
            model = self.run_steps(routing, out, 5)  # resumes at step 3
            log = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
            self.assertEqual([r['step'] for r in log], [1, 2, 3, 4, 5])
            self.assertTrue(all(torch.isfinite(torch.tensor(r['ce'])) for r in log))
            self.assertIn('heldout_ce', log[2])
            self.assertEqual(torch.load(out / 'checkpoint.pt')['step'], 5)
            # Top-p keeps between 1 and all experts; top-2 exactly two.
            counts = log[-1]['experts']
            if routing == 'top-p':
                self.assertTrue(all(1 <= c <= 4 for c in counts))
            else:
                self.assertEqual(counts, [2.0, 2.0])
            folder = export.export(out / 'checkpoint.pt', self.data / 'tokenizer.json', self.root / name, 'float32')
            config = json.loads((folder / 'config.json').read_text())
            if routing == 'top-p':
                self.assertEqual((config['num_experts'], config['top_p_threshold'], config['expert_frequency']), (4, 0.4, 1))
            else:
                self.assertEqual((config['model_type'], config['num_local_experts'], config['num_experts_per_tok']), ('mixtral', 4, 2))
            model.eval()
            with torch.no_grad():
                logits, *_ = model(torch.tensor([ids]))
            reference[name] = logits[0].flatten().tolist()
        (self.root / 'reference.json').write_text(json.dumps(reference))

    def test_top_p_selection_follows_routing_md(self):
        # ROUTING.md's worked examples at p = 0.4: strict '>' at the cut, ties to the lower id.
        config = ModelConfig(routing='top-p', top_p=0.4)
        probs = torch.softmax(torch.tensor([[0.2, 1.0, 0.0, 0.8, 0.4, 0.6], [0.0] * 6]), dim=-1)
        mask, weights = select(probs, config)
        self.assertEqual(mask[0].nonzero().flatten().tolist(), [1, 3])
        self.assertEqual(mask[1].nonzero().flatten().tolist(), [0, 1, 2])
        self.assertTrue(torch.allclose(weights[0, 1], probs[0, 1]))  # raw probabilities, not renormalised
        mask, _ = select(torch.tensor([[0.4, 0.3, 0.2, 0.1]]), config)
        self.assertEqual(mask[0].nonzero().flatten().tolist(), [0, 1])

    def test_same_seed_same_model(self):
        torch.manual_seed(3)
        a = MoeLm(ModelConfig(vocab=64, hidden=16, heads=2, experts=2, expert_ffn=8, layers=1))
        torch.manual_seed(3)
        b = MoeLm(ModelConfig(vocab=64, hidden=16, heads=2, experts=2, expert_ffn=8, layers=1))
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            self.assertTrue(torch.equal(x, y), name)


if __name__ == '__main__':
    unittest.main()
