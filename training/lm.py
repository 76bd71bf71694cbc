"""``speechlabel lm``: build a label n-gram language model (:class:`audiomodels.lm.NgramLM`).

Interpolated modified Kneser-Ney (Chen & Goodman, 1998): three discounts per order, for grams
seen once, twice and more often, estimated from the count-of-counts (on the shipped LMs' text it
beat one discount per order on dev, README). Lower orders use continuation counts (in how many
contexts a label sequence appears), except sequences that start at the sentence start, which have
no left context and keep their raw counts.

Text sources, in the acoustic model's labels (phone models get espeak-ng's phones of the text):
``--text`` files (one sentence per line), ``--manifest`` files (their ``text``, or ``phones`` for
phone models), and ``--fortunes-split`` (the sentence pool of one split of ``speechlabel corpus
synth``'s text, e.g. ``train``: disjoint from the dev and test sentences of the same seed) and
``--fortunes-unspoken`` (the rest of that text, which the corpus never speaks, less anything that
holds a dev or test sentence: a third more text for the same LM, measured on dev).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from audiomodels.checkpoint import CheckpointError, load_checkpoint
from audiomodels.labels import LabelError, LabelSet, phonemize_batch
from audiomodels.lm import BOS, UNKNOWN_WORD, NgramLM, WordNgram, pack
from training.corpus import load_sentences, split_sentences, unspoken_sentences
from training.manifest import ManifestError, read_manifest

Ngram = tuple[int, ...]


def build_lm(
    sentences: Iterable[Sequence[int]], num_labels: int, order: int, labels: tuple[str, ...] = (), source: str = ""
) -> NgramLM:
    """Interpolated modified Kneser-Ney over id sentences (ids 1..num_labels-1; id 0, the blank, never occurs)."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    eos = num_labels
    top: Counter[Ngram] = Counter()
    for ids in sentences:
        padded = [BOS] * (order - 1) + list(ids) + [eos]
        for end in range(order - 1, len(padded)):
            top[tuple(padded[end - order + 1 : end + 1])] += 1
    if not top:
        raise ValueError("no text to build a language model from")
    counts = _adjusted_counts(top, order)
    vocabulary = range(1, num_labels + 1)  # every label and EOS gets a unigram, seen or not
    base = num_labels + 2
    log_probs: dict[int, float] = {}
    backoffs: dict[int, float] = {}
    lower: dict[Ngram, float] = {(): 1.0 / len(vocabulary)}  # order 0: uniform
    for k in range(1, order + 1):
        discounts = kn_discounts(counts[k])
        totals: defaultdict[Ngram, int] = defaultdict(int)
        freed: defaultdict[Ngram, float] = defaultdict(float)  # probability mass the discounts free
        for ngram, count in counts[k].items():
            totals[ngram[:-1]] += count
            freed[ngram[:-1]] += discounts[min(count, 3) - 1]
        current: dict[Ngram, float] = {}
        for ngram in [(label,) for label in vocabulary] if k == 1 else counts[k]:
            history = ngram[:-1]
            count = counts[k].get(ngram, 0)
            seen = (count - discounts[min(count, 3) - 1]) / totals[history] if count else 0.0
            # A seen k-gram's suffix was seen at order k-1 (counts are suffix sums), so it is in `lower`.
            current[ngram] = seen + freed[history] / totals[history] * lower[ngram[1:] if k > 1 else ()]
            log_probs[pack(ngram, base)] = math.log(current[ngram])
        for history in totals:
            backoffs[pack(history, base)] = math.log(freed[history] / totals[history])
        lower = current
    return NgramLM(order, num_labels, labels, log_probs, backoffs, source)


def build_word_lm(sentences: Sequence[Sequence[int]], separator: int, order: int, min_count: int = 2) -> WordNgram:
    """Kneser-Ney over the words of label-id sentences. Words seen fewer than ``min_count`` times
    become the unknown word, whose probability thereby stands for every word the text never had."""
    spelled = [split_words(ids, separator) for ids in sentences]
    counts = Counter(word for words in spelled for word in words)
    vocabulary = tuple(sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)))
    ids = {word: index + 2 for index, word in enumerate(vocabulary)}
    word_sentences = [[ids.get(word, UNKNOWN_WORD) for word in words] for words in spelled]
    return WordNgram(build_lm(word_sentences, len(vocabulary) + 2, order), separator, vocabulary)


def split_words(ids: Sequence[int], separator: int) -> list[tuple[int, ...]]:
    """Label ids -> words (tuples of label ids), split at the separator."""
    words, current = [], []
    for label in ids:
        if label != separator:
            current.append(label)
        elif current:
            words.append(tuple(current))
            current = []
    return [*words, tuple(current)] if current else words


def _adjusted_counts(top: Counter[Ngram], order: int) -> dict[int, Counter[Ngram]]:
    """Raw counts at the top order; below it continuation counts (distinct left neighbours), except
    for grams that start with sentence-start padding, whose only left neighbour is more padding."""
    counts = {order: top}
    for k in range(order - 1, 0, -1):
        raw = _raw_counts(top, k)
        continuation: Counter[Ngram] = Counter()
        for ngram in counts[k + 1]:
            continuation[ngram[1:]] += 1
        counts[k] = Counter({g: raw[g] if g[0] == BOS else continuation[g] for g in raw})
    return counts


def _raw_counts(top: Counter[Ngram], k: int) -> Counter[Ngram]:
    """Occurrences of each k-gram: every position has one top-order gram ending there."""
    raw: Counter[Ngram] = Counter()
    for ngram, count in top.items():
        raw[ngram[-k:]] += count
    return raw


def kn_discounts(counts: Counter[Ngram]) -> tuple[float, float, float]:
    """D1, D2, D3+ = c - (c + 1) Y n(c+1) / n(c) with Y = n1 / (n1 + 2 n2), each clamped into
    [0.1, c - 0.1]; tiny texts without grams seen 1-4 times get one D = Y for all three."""
    of_counts = Counter(count for count in counts.values() if count <= 4)
    n = [of_counts[c] for c in range(5)]
    y = min(max(n[1] / (n[1] + 2 * n[2]), 0.1), 0.9) if n[1] + n[2] else 0.5
    if not all(n[1:]):
        return y, y, y
    d1, d2, d3 = (min(max(c - (c + 1) * y * n[c + 1] / n[c], 0.1), c - 0.1) for c in (1, 2, 3))
    return d1, d2, d3


# --------------------------------------------------------------------------- command line


def read_sentences(
    labels: LabelSet,
    text_files: Sequence[Path] = (),
    manifests: Sequence[Path] = (),
    fortunes_split: str | None = None,
    seed: int = 0,
    fortunes_unspoken: bool = False,
) -> list[str]:
    """The text of every source, in the label set's form (phone strings for phone models)."""
    texts: list[str] = []
    for path in text_files:
        texts += [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if fortunes_split:
        texts += [s.text for s in split_sentences(load_sentences(), seed)[fortunes_split]]
    if fortunes_unspoken:
        texts += unspoken_sentences(seed)
    if labels.kind == "phone" and texts:
        texts = phonemize_batch(texts, check=False)  # encode_all skips and counts any outside the inventory
    for path in manifests:
        field = "phones" if labels.kind == "phone" else "text"
        texts += [u.target(field) or "" for u in read_manifest(path)]
    return texts


def encode_all(texts: Iterable[str], labels: LabelSet) -> tuple[list[list[int]], int]:
    """Label ids of each text; texts with symbols outside the label set are skipped and counted."""
    encoded, skipped = [], 0
    for text in texts:
        try:
            ids = labels.encode(labels.normalize(text))
        except LabelError:
            skipped += 1
            continue
        if ids:
            encoded.append(ids)
    return encoded, skipped


def describe_sources(args: argparse.Namespace, sentences: int) -> str:
    """One line for model cards: which texts, how many sentences."""
    sources = [f"text file {Path(p).name}" for p in args.text] + [f"manifest {Path(p).name}" for p in args.manifest]
    if args.fortunes_split:
        sources.append(f"the corpus's fortunes {args.fortunes_split} sentences (seed {args.seed})")
    if args.fortunes_unspoken:
        sources.append(f"the unspoken fortunes sentences, none holding a held-out one (seed {args.seed})")
    return f"{', '.join(sources)}: {sentences} sentences"


def perplexity(lm: NgramLM, sentences: Sequence[Sequence[int]]) -> float:
    """Per-label perplexity (EOS counted), the usual measure of how well an LM predicts held-out text."""
    total = sum(lm.sentence_log_prob(ids) for ids in sentences)
    return math.exp(-total / sum(len(ids) + 1 for ids in sentences))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="acoustic model whose label set the LM uses")
    parser.add_argument("--out", type=Path, required=True, help="output file (.npz)")
    parser.add_argument("--order", type=int, default=6, help="n-gram order (default 6)")
    parser.add_argument("--text", type=Path, action="append", default=[], help="plain text file, one sentence per line")
    parser.add_argument("--manifest", type=Path, action="append", default=[], help="JSONL manifest (text or phones)")
    parser.add_argument("--fortunes-split", choices=["train", "dev", "test"], help="a split of the corpus text pool")
    parser.add_argument(
        "--fortunes-unspoken",
        action="store_true",
        help="also the fortunes sentences the corpus never speaks (none holds a dev or test sentence of --seed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus seed of the fortunes options (default 0)")
    parser.add_argument("--dev", type=Path, help="manifest to report the LM's perplexity on")
    parser.add_argument(
        "--word-order", type=int, default=3, help="order of the word n-gram stored with it (default 3; 0 = none)"
    )
    parser.add_argument(
        "--word-min-count", type=int, default=2, help="rarer words share the unknown word's probability (default 2)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        labels = LabelSet.from_config(load_checkpoint(args.checkpoint).config.labels)
        texts = read_sentences(labels, args.text, args.manifest, args.fortunes_split, args.seed, args.fortunes_unspoken)
        encoded, skipped = encode_all(texts, labels)
        lm = build_lm(encoded, len(labels), args.order, labels.symbols, describe_sources(args, len(encoded)))
        if args.word_order > 0 and labels.word_separator:
            separator = labels.symbols.index(labels.word_separator)
            lm.words = build_word_lm(encoded, separator, args.word_order, args.word_min_count)
    except (CheckpointError, ManifestError, OSError, ValueError) as error:
        print(f"speechlabel lm: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lm.save(args.out)
    print(
        f"{len(encoded)} sentences ({sum(map(len, encoded))} labels, {skipped} skipped), order {args.order}: "
        f"{len(lm.log_probs)} n-grams -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)"
    )
    if lm.words is not None:
        print(f"words: order {args.word_order}, {len(lm.words.vocabulary)} in the vocabulary, "
              f"{len(lm.words.ngrams.log_probs)} n-grams")
    if args.dev:
        dev, _ = encode_all(read_sentences(labels, manifests=[args.dev]), labels)
        print(f"perplexity on {args.dev}: {perplexity(lm, dev):.2f} per label (uniform: {len(labels):d})")
        if lm.words is not None:
            words = [[lm.words.word_id(w) for w in split_words(ids, lm.words.separator)] for ids in dev]
            unknown = sum(word == UNKNOWN_WORD for sentence in words for word in sentence) / sum(map(len, words))
            print(f"word perplexity {perplexity(lm.words.ngrams, words):.1f} per word, {unknown:.1%} unknown words")
    return 0
