"""Extracts the King James Bible (Debian's bible-kjv-text, public domain) into train and held-out text files.

Every chapter becomes a paragraph of verses, one verse per line, without verse numbers; every 20th chapter is
held out (about 5% of the text, spread over all books).
"""
import argparse
import re
import subprocess
from pathlib import Path

HELD_OUT_EVERY = 20


def chapters(raw: str):
    """(heading, [verse, ...]) for each chapter of the `bible` program's output."""
    current, verses = None, []
    for line in raw.splitlines():
        if not line.strip():
            continue
        if not line.startswith(' '):
            # A line starting in column 0 is a chapter heading ("Genesis 1") or the wrapped tail of a verse.
            if re.fullmatch(r'(?:[1-3] )?[A-Z][A-Za-z ]+ \d+', line.strip()) and (current is None or verses):
                if current is not None:
                    yield current, verses
                current, verses = line.strip(), []
                continue
            verses[-1] += ' ' + line.strip()
            continue
        number, _, text = line.strip().partition(' ')
        if number.isdigit():
            verses.append(text.strip())
        else:
            verses[-1] += ' ' + line.strip()
    if current is not None:
        yield current, verses


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default='data', help='folder for train.txt and heldout.txt')
    args = parser.parse_args()
    raw = subprocess.run(['bible', '-l1000', 'gen1:1-rev22:21'], check=True, capture_output=True, text=True).stdout
    train, held = [], []
    for index, (_, verses) in enumerate(chapters(raw)):
        (held if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else train).append('\n'.join(verses))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'train.txt').write_text('\n\n'.join(train) + '\n')
    (out / 'heldout.txt').write_text('\n\n'.join(held) + '\n')
    print(f'{len(train)} train chapters, {len(held)} held-out chapters -> {out}')


if __name__ == '__main__':
    main()
