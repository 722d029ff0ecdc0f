"""Experts per token against token difficulty on held-out text: the paper's 'harder tokens take more experts'.

Runs a training checkpoint over the held-out text in non-overlapping windows (as `dynamoe sweep` scores it), and
reports the mean experts per token (all layers, and per layer) for each decile of the token's loss (the loss of
predicting the NEXT token from this position, whose routing is what the decile groups), and for kinds of tokens.
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from model import ModelConfig, MoeLm

# Tokens in the byte-level alphabet: a space is shown as U+0120 and a line feed as U+010A (both count as letters
# for str.isalpha, so letters are tested as ASCII).
KINDS = {
    'word start': lambda t: t.startswith('\u0120') and t[1:].isascii() and t[1:].isalpha(),
    'inside a word': lambda t: t.isascii() and t.isalpha(),
    'punctuation': lambda t: all(not c.isalnum() and c not in '\u0120\u010a' for c in t),
    'line break': lambda t: '\u010a' in t,
}


@torch.no_grad()
def per_token(model, ids, context):
    """Per position: next-token loss [N], experts per layer [N, L], and the token id at the position [N]."""
    losses, counts, tokens = [], [], []
    for start in range(0, len(ids) - 1, context):
        window = ids[start : start + context + 1]
        if len(window) < 2:
            break
        x = window[None, :-1]
        hidden, layer_counts = model.embed_tokens(x), []
        for layer in model.layers:
            hidden, _, n = layer(hidden, model.cos, model.sin)
            layer_counts.append(n)
        logits = model.norm(hidden) @ model.embed_tokens.weight.t()
        losses.append(F.cross_entropy(logits[0], window[1:], reduction='none'))
        counts.append(torch.stack(layer_counts, dim=-1))
        tokens.append(window[:-1])
    return torch.cat(losses), torch.cat(counts), torch.cat(tokens)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--data', required=True, help='folder with heldout.txt and tokenizer.json')
    parser.add_argument('--ids', required=True, help='held-out token ids cached by train.py (heldout-ids.pt)')
    parser.add_argument('--json', help='write the figures here too')
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = torch.load(args.checkpoint)
    model = MoeLm(ModelConfig(**state['config']))
    model.load_state_dict(state['model'])
    model.eval()
    ids = torch.load(args.ids)
    loss, counts, tokens = per_token(model, ids, model.config.context)
    mean = counts.mean(-1)
    order = loss.argsort()
    deciles = []
    print(f'{len(loss)} held-out positions; experts/token {mean.mean():.3f}, by layer '
          + ' '.join(f'{v:.2f}' for v in counts.mean(0).tolist()))
    print('loss decile   loss range        mean loss   experts/token   per layer')
    for d, part in enumerate(order.chunk(10)):
        row = {'decile': d + 1, 'loss_min': loss[part].min().item(), 'loss_max': loss[part].max().item(),
               'loss_mean': loss[part].mean().item(), 'experts': mean[part].mean().item(),
               'by_layer': counts[part].mean(0).tolist()}
        deciles.append(row)
        print(f"{row['decile']:>11}   {row['loss_min']:6.2f}-{row['loss_max']:6.2f}   {row['loss_mean']:9.2f}   "
              f"{row['experts']:13.3f}   " + ' '.join(f'{v:.2f}' for v in row['by_layer']))
    vocab = json.loads((Path(args.data) / 'tokenizer.json').read_text())['model']['vocab']
    text_of = {i: t for t, i in vocab.items()}
    kinds = []
    print('token kind      share   mean loss   experts/token   per layer')
    for name, test in KINDS.items():
        mask = torch.tensor([test(text_of.get(int(t), '')) for t in tokens])
        row = {'kind': name, 'share': mask.float().mean().item(), 'loss_mean': loss[mask].mean().item(),
               'experts': mean[mask].mean().item(), 'by_layer': counts[mask].mean(0).tolist()}
        kinds.append(row)
        print(f"{name:<14} {row['share'] * 100:5.1f}%   {row['loss_mean']:9.2f}   {row['experts']:13.3f}   "
              + ' '.join(f'{v:.2f}' for v in row['by_layer']))
    correlation = torch.corrcoef(torch.stack([loss, mean]))[0, 1].item()
    print(f'correlation of token loss and experts/token: {correlation:.3f}')
    if args.json:
        Path(args.json).write_text(json.dumps({'positions': len(loss), 'experts': mean.mean().item(),
                                               'by_layer': counts.mean(0).tolist(), 'deciles': deciles,
                                               'kinds': kinds, 'correlation': correlation}, indent=2) + '\n')


if __name__ == '__main__':
    main()
