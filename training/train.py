"""Trains the MoE language model with the paper's method; seeded and resumable from its last checkpoint.

Loss = cross-entropy + 1e-4 * dynamic (entropy) loss (top-p only, as in the paper) + 1e-2 * load-balance loss,
each router loss summed over the MoE layers.
"""
import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bpe import Encoder
from model import ModelConfig, MoeLm

DYNAMIC_LOSS_WEIGHT = 1e-4
BALANCE_LOSS_WEIGHT = 1e-2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--data', required=True, help='folder with train.txt, heldout.txt and tokenizer.json')
    p.add_argument('--out', required=True, help='folder for checkpoints and the training log')
    p.add_argument('--routing', choices=['top-p', 'top-k'], default='top-p')
    p.add_argument('--top-p', type=float, default=0.4)
    p.add_argument('--top-k', type=int, default=2)
    p.add_argument('--hidden', type=int, default=256)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--experts', type=int, default=8)
    p.add_argument('--expert-ffn', type=int, default=192)
    p.add_argument('--context', type=int, default=256)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--steps', type=int, default=1200)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=int, default=50)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--eval-every', type=int, default=100)
    p.add_argument('--eval-windows', type=int, default=32, help='held-out windows per evaluation')
    p.add_argument('--checkpoint-every', type=int, default=50)
    return p.parse_args(argv)


def token_ids(data: Path, name: str, cache: Path):
    """The text's token ids, cached next to the checkpoints."""
    if cache.exists():
        return torch.load(cache)
    tokenizer = json.loads((data / 'tokenizer.json').read_text())
    ids = torch.tensor(Encoder(tokenizer).encode((data / name).read_text()), dtype=torch.long)
    torch.save(ids, cache)
    return ids


def batch(ids, size, context, generator):
    starts = torch.randint(0, len(ids) - context - 1, (size,), generator=generator)
    rows = torch.stack([ids[s : s + context + 1] for s in starts.tolist()])
    return rows[:, :-1], rows[:, 1:]


def learning_rate(step, args):
    # Linear warm-up, then cosine decay to a tenth of the peak.
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model, ids, context, windows):
    """Mean held-out cross-entropy over the first `windows` non-overlapping windows."""
    model.eval()
    total, count = 0.0, 0
    for w in range(min(windows, (len(ids) - 1) // context)):
        x = ids[w * context : (w + 1) * context + 1]
        logits, *_ = model(x[None, :-1])
        total += F.cross_entropy(logits[0], x[1:], reduction='sum').item()
        count += context
    model.train()
    return total / count


def config_of(args, vocab):
    return ModelConfig(vocab=vocab, hidden=args.hidden, layers=args.layers, heads=args.heads, experts=args.experts,
                       expert_ffn=args.expert_ffn, context=args.context, routing=args.routing, top_p=args.top_p,
                       top_k=args.top_k)


def train(args):
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    train_ids = token_ids(data, 'train.txt', out / 'train-ids.pt')
    held_ids = token_ids(data, 'heldout.txt', out / 'heldout-ids.pt')
    vocab = len(json.loads((data / 'tokenizer.json').read_text())['model']['vocab']) + 1  # + <|endoftext|>
    torch.manual_seed(args.seed)
    config = config_of(args, vocab)
    model = MoeLm(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    generator = torch.Generator().manual_seed(args.seed)
    step, elapsed = 0, 0.0
    checkpoint = out / 'checkpoint.pt'
    if checkpoint.exists():
        state = torch.load(checkpoint)
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        generator.set_state(state['generator'])
        step, elapsed = state['step'], state['elapsed']
        # Steps logged after the checkpoint are trained again: their records go.
        log_file = out / 'log.jsonl'
        kept = [line for line in log_file.read_text().splitlines() if json.loads(line)['step'] <= step]
        log_file.write_text(''.join(line + '\n' for line in kept))
        print(f'resumed at step {step}')
    params = sum(p.numel() for p in model.parameters())
    print(f'{args.routing}: {params / 1e6:.2f}M parameters, {len(train_ids)} train tokens, {args.threads} thread(s)')
    log = (out / 'log.jsonl').open('a')
    started = time.time() - elapsed
    while step < args.steps:
        for group in optimizer.param_groups:
            group['lr'] = learning_rate(step, args)
        x, y = batch(train_ids, args.batch, args.context, generator)
        logits, dynamic, balance, experts = model(x)
        ce = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss = ce + BALANCE_LOSS_WEIGHT * balance
        if args.routing == 'top-p':
            loss = loss + DYNAMIC_LOSS_WEIGHT * dynamic
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        record = {'step': step, 'ce': round(ce.item(), 4), 'dynamic': round(float(dynamic), 4),
                  'balance': round(float(balance), 4), 'experts': [round(e, 3) for e in experts.tolist()],
                  'seconds': round(time.time() - started, 1)}
        if step % args.eval_every == 0 or step == args.steps:
            record['heldout_ce'] = round(evaluate(model, held_ids, args.context, args.eval_windows), 4)
        log.write(json.dumps(record) + '\n')
        log.flush()
        if step % 10 == 0 or 'heldout_ce' in record:
            print(json.dumps(record), flush=True)
        if step % args.checkpoint_every == 0 or step == args.steps:
            state = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'generator': generator.get_state(),
                     'step': step, 'elapsed': time.time() - started, 'config': config.to_dict()}
            # Written aside and renamed, so an interrupted save never leaves a broken checkpoint.
            torch.save(state, out / 'checkpoint.tmp')
            os.replace(out / 'checkpoint.tmp', checkpoint)
    return model


if __name__ == '__main__':
    train(parse_args())
