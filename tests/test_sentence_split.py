"""Sentence splitting for SOP (data_tools.sentence_split)."""

import pytest

from data_tools.sentence_split import cjk_sentence_spans, split_sentences, terminator_start


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我爱北京。天安门很大！你呢？", ["我爱北京。", "天安门很大！", "你呢？"]),
        ("第一句；第二句", ["第一句；", "第二句"]),
        ("他说：“我来了。”然后走了。", ["他说：“我来了。”", "然后走了。"]),
        ("括号里（如此。）后面还有", ["括号里（如此。）", "后面还有"]),
        ("书名《呐喊！》之后", ["书名《呐喊！》", "之后"]),
        ("真的吗？！是的！！", ["真的吗？！", "是的！！"]),
        ("是的……好吧…再见", ["是的……", "好吧…", "再见"]),
        ("第一行\n\n第二行\r\n第三行", ["第一行", "第二行", "第三行"]),
        ("没有标点", ["没有标点"]),
        ("价格上涨了3.5%。版本2.0发布了。", ["价格上涨了3.5%。", "版本2.0发布了。"]),
        ("Hello world. How are you? Fine!", ["Hello world.", "How are you?", "Fine!"]),
        (
            "Mr. Smith met Dr. Lee in the U.S. yesterday. It was 3.14 p.m. sharp.",
            ["Mr. Smith met Dr. Lee in the U.S. yesterday.", "It was 3.14 p.m. sharp."],
        ),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("Wait... what? OK.", ["Wait...", "what?", "OK."]),
        ("e.g. this one. And I saw J. Smith.", ["e.g. this one.", "And I saw J. Smith."]),
        ("中文。English too. 混合！", ["中文。", "English too.", "混合！"]),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\n", " \n 。 \n"])
def test_no_empty_sentences(text):
    sentences = split_sentences(text)
    assert all(s and s == s.strip() for s in sentences)
    assert sentences == ([] if "。" not in text else ["。"])


def test_nothing_lost_on_real_text():
    from data_tools.corpus import peoples_daily_text

    for text in peoples_daily_text()[:2000]:
        sentences = split_sentences(text)
        assert "".join(sentences) == "".join(text.split())
        assert all(s for s in sentences)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我爱北京。天安门很大！！你呢", ["我爱北京。", "天安门很大！！", "你呢"]),
        ("。开头", ["。", "开头"]),
        ("没有标点", ["没有标点"]),
        ("", []),
        ("他说：“来了。”好", ["他说：“来了。", "”好"]),  # the built-in rule: closing quotes are not kept (unlike SOP)
    ],
)
def test_cjk_sentence_spans_tile_the_text(text, expected):
    spans = cjk_sentence_spans(text)
    assert [text[a:b] for a, b in spans] == expected
    assert "".join(text[a:b] for a, b in spans) == text
    for a, b in spans:
        run = terminator_start(text, a, b)
        assert set(text[run:b]) <= set("。！？") and (run == b or text[b - 1] in "。！？")
