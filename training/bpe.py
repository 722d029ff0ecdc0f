"""Byte-level BPE (GPT-2 style): trains merges on a text, writes tokenizer.json, encodes text to token ids."""
import argparse
import collections
import json
import re
from pathlib import Path

# GPT-2's pre-tokenizer split, restricted to ASCII letters and digits (the corpus is ASCII); tokenizer.json carries
# the Unicode form, which splits ASCII text identically.
SPLIT_ASCII = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")
SPLIT_UNICODE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
END_OF_TEXT = '<|endoftext|>'


def byte_alphabet():
    """GPT-2's byte -> printable character table (the ByteLevel pre-tokenizer's alphabet)."""
    printable = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


BYTE_CHARS = byte_alphabet()


def words(text):
    return [''.join(BYTE_CHARS[b] for b in piece.encode('utf-8')) for piece in SPLIT_ASCII.findall(text)]


def train(text, vocab_size):
    """Merges learnt greedily by pair frequency over the pre-tokenized words (ties: first pair seen)."""
    counts = collections.Counter(words(text))
    symbols = {w: list(w) for w in counts}
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for w, n in counts.items():
        for a, b in zip(symbols[w], symbols[w][1:]):
            pairs[a, b] += n
            where[a, b].add(w)
    merges = []
    # Byte tokens, merges and the end-of-text token make up the vocabulary.
    while len(merges) < vocab_size - 256 - 1 and pairs:
        best = max(pairs, key=pairs.get)
        if pairs[best] < 2:
            break
        merges.append(best)
        joined = best[0] + best[1]
        for w in list(where.pop(best, ())):
            s, n = symbols[w], counts[w]
            for a, b in zip(s, s[1:]):
                pairs[a, b] -= n
                if pairs[a, b] <= 0:
                    del pairs[a, b]
            merged, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    merged.append(joined)
                    i += 2
                else:
                    merged.append(s[i])
                    i += 1
            symbols[w] = merged
            for a, b in zip(merged, merged[1:]):
                pairs[a, b] += n
                where[a, b].add(w)
        pairs.pop(best, None)
    return merges


def tokenizer_json(merges):
    vocab = {c: i for i, c in enumerate(BYTE_CHARS[b] for b in range(256))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    eos = len(vocab)
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': False, 'use_regex': False}
    return {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': [{'id': eos, 'content': END_OF_TEXT, 'single_word': False, 'lstrip': False, 'rstrip': False,
                          'normalized': False, 'special': True}],
        'normalizer': None,
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Split', 'pattern': {'Regex': SPLIT_UNICODE}, 'behavior': 'Isolated', 'invert': False}, byte_level]},
        'post_processor': None,
        'decoder': byte_level,
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                  'vocab': vocab, 'merges': [[a, b] for a, b in merges]},
    }


class Encoder:
    """Applies the merges by rank, as the BPE model of tokenizer.json does."""

    def __init__(self, tokenizer):
        model = tokenizer['model']
        self.vocab = model['vocab']
        self.ranks = {tuple(m): i for i, m in enumerate(model['merges'])}
        self.cache = {}

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        s = list(w)
        while len(s) > 1:
            ranked = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(s, s[1:]))]
            rank, i = min(ranked)
            if rank == 1 << 30:
                break
            s[i:i + 2] = [s[i] + s[i + 1]]
        ids = [self.vocab[p] for p in s]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        return [i for w in words(text) for i in self.word(w)]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--text', required=True)
    parser.add_argument('--vocab', type=int, default=4096)
    parser.add_argument('--out', required=True, help='tokenizer.json to write')
    args = parser.parse_args()
    merges = train(Path(args.text).read_text(), args.vocab)
    Path(args.out).write_text(json.dumps(tokenizer_json(merges), ensure_ascii=False))
    print(f'{len(merges)} merges, vocabulary {256 + len(merges) + 1} -> {args.out}')


if __name__ == '__main__':
    main()
