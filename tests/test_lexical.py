"""LAC's lexical model on Paddle Inference (data_tools.lac.LacLexicalModel), checked against LAC's own Python code
and README, and the phrase / entity rules and unit markers (data_tools.lexical_units)."""

import importlib.util
import os
import sys
import types

import numpy as np
import pytest

from data_tools import corpus
from data_tools.lac import LacLexicalModel, find_lac_model_dir
from data_tools.lexical_units import (
    ENTITY_START,
    IN_ENTITY,
    PHRASE_START,
    WORD_START,
    chunk_phrases,
    find_entities,
    split_whitespace,
    token_markers,
    word_markers,
)


@pytest.fixture(scope="module")
def lexical():
    return LacLexicalModel()


def lac_source(name: str):
    """A module of the installed LAC package loaded on its own (LAC's __init__ imports paddle.fluid)."""
    pkg_dir = os.path.dirname(find_lac_model_dir(which="lac_model"))
    if "_lac_src" not in sys.modules:
        pkg = types.ModuleType("_lac_src")
        pkg.__path__ = [pkg_dir]
        sys.modules["_lac_src"] = pkg
    spec = importlib.util.spec_from_file_location(f"_lac_src.{name}", os.path.join(pkg_dir, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tagged(result):
    return [" ".join(f"{w}/{t}" for w, t in zip(words, tags)) for words, tags in result]


def test_lac_readme_examples(lexical):
    assert tagged(lexical.analyse(["百度是一家高科技公司", "LAC是个优秀的分词工具", ""])) == [
        "百度/ORG 是/v 一家/m 高科技/n 公司/n",
        "LAC/nz 是/v 个/q 优秀/a 的/u 分词/n 工具/n",
        "",
    ]
    # tag.dic: 57 lines, 49 ids; the later PER/LOC/ORG/TIME lines win over nr/ns/nt/t
    assert len(lexical.tag_names) == 49 and lexical.tag_names[16] == "PER-B" and lexical.tag_names[34] == "TIME-B"
    assert not {"nr", "ns", "nt", "t"} & set(lexical.types)


def test_inputs_match_lac_reader(lexical):
    """fast_cut pieces and piece ids equal those of LAC's own segment.py + reader.py on real text."""
    conf = os.path.join(lexical.model_dir, "conf")
    segment = lac_source("segment").Segment(os.path.join(conf, "small_seg.dic"))
    reader = lac_source("reader")
    args = types.SimpleNamespace(
        word_dict_path=os.path.join(conf, "word.dic"),
        model="lac",
        label_dict_path=os.path.join(conf, "tag.dic"),
        word_rep_dict_path=os.path.join(conf, "q2b.dic"),
    )
    dataset = reader.Dataset(args)
    texts = ["".join(w for w, _ in p) for p in corpus.peoples_daily_paragraphs()[:60]]
    texts += ["Ｐａｄｄｌｅ　３．０发布了！ hello world 2024年", "臺灣的東西", "ABC123中文abc"]
    for text in texts:
        pieces = segment.fast_cut(text)
        assert lexical.cut(text) == pieces
        ids, lens = lexical.encode(text)
        expected_ids, expected_lens = dataset.text_to_ids(pieces)
        assert ids.tolist() == expected_ids and lens.tolist() == expected_lens


def test_long_and_batched_texts(lexical):
    texts = ["中华人民共和国成立了。" * 30, "我爱北京天安门", "江泽民主席在北京会见了美国总统克林顿。"]
    batch = lexical.analyse(texts)
    assert batch[1:] == [lexical.analyse([t])[0] for t in texts[1:]]
    for text, (words, tags) in zip(texts, batch):
        assert "".join(words) == text and len(words) == len(tags)
    assert "江泽民/PER" in tagged(batch)[2] and "克林顿/PER" in tagged(batch)[2] and "北京/LOC" in tagged(batch)[2]


def test_phrase_rules():
    def phrases(pairs):
        words, labels = zip(*pairs)
        starts = chunk_phrases(list(labels)) + [len(words)]
        return ["".join(words[a:b]) for a, b in zip(starts[:-1], starts[1:])]

    assert phrases([("百度", "ORG"), ("是", "v"), ("一家", "m"), ("高科技", "n"), ("公司", "n")]) == [
        "百度",
        "是",
        "一家",
        "高科技公司",
    ]
    assert phrases([("三", "m"), ("个", "q"), ("大", "a"), ("城市", "n")]) == ["三个", "大城市"]
    assert phrases([("新华社", "ORG"), ("记者", "n"), ("1998年", "TIME"), ("1月", "TIME"), ("报道", "v")]) == [
        "新华社记者",
        "1998年1月",
        "报道",
    ]
    assert phrases([("两", "m"), ("千", "m"), ("吨", "q"), ("北京", "LOC"), ("天安门", "LOC")]) == [
        "两千吨",
        "北京天安门",
    ]
    assert find_entities(["PER", "w", "PER", "v", "LOC", "LOC", "TIME", "nz"]) == [(0, 1), (2, 3), (4, 6), (7, 8)]


def test_markers_of_words_and_tokens():
    flags = word_markers(["ORG", "v", "m", "n", "n"])  # 百度 是 一家 高科技 公司
    assert flags == [
        WORD_START | PHRASE_START | ENTITY_START | IN_ENTITY,
        WORD_START | PHRASE_START,
        WORD_START | PHRASE_START,
        WORD_START | PHRASE_START,
        WORD_START,
    ]
    marks = token_markers([2, 1, 2, 3, 2], flags)
    assert marks.dtype == np.uint8 and marks.tolist() == [15, 8, 3, 3, 0, 3, 0, 0, 1, 0]
    assert token_markers([0, 2, 1], [3, 1, 3]).tolist() == [3, 0, 3]  # a dropped word's phrase start moves on
    words, split = split_whitespace(["New York", "是"], [WORD_START | ENTITY_START | IN_ENTITY, WORD_START])
    assert words == ["New", "York", "是"] and split == [13, WORD_START | IN_ENTITY, WORD_START]
