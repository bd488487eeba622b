"""ernie.hub: PaddleNLP names resolved offline first (a folder of that name, PaddleNLP's cache, then its URL). Every
download goes to a local HTTP server on 127.0.0.1 (``ERNIE_DOWNLOAD_ENDPOINT``); nothing here reaches the network.
The tables are compared with the installed PaddleNLP (compat marker)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from ernie import hub
from ernie.tokenizer import ErnieTokenizer
from ernie.utils import UserError

VOCAB = "[PAD]\n[CLS]\n[SEP]\n[MASK]\n[UNK]\n你\n好\n##好\n世\n界\n" + "".join(f"t{i}\n" for i in range(54))


class Server:
    """Files by URL path; honours ``Range: bytes=N-``; ``truncate[path] = n`` cuts the next answer after n bytes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body) and rng:
                    self.send_error(416)
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.truncate.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start : start + cut])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    s = Server()
    monkeypatch.setenv("PPNLP_HOME", str(tmp_path / "ppnlp"))
    monkeypatch.setenv(hub.ENV_ENDPOINT, s.url)
    monkeypatch.delenv(hub.ENV_OFFLINE, raising=False)
    monkeypatch.chdir(tmp_path)
    yield s
    s.close()


def url_path(url: str) -> str:
    return hub.mirrored(url)[len(os.environ[hub.ENV_ENDPOINT]) :]


def test_vocab_by_name_is_downloaded_into_paddlenlps_cache_once(server):
    spec = hub.MODELS["ernie-3.0-nano-zh"]
    server.files[url_path(spec.vocab_url)] = VOCAB.encode()
    tok = ErnieTokenizer.from_pretrained("ernie-3.0-nano-zh")
    assert tok.vocab_size == 64 and tok.tokenize("你好") == ["你", "好"]
    cached = os.path.join(os.environ["PPNLP_HOME"], "models", "ernie-3.0-nano-zh", "ernie_3.0_nano_zh_vocab.txt")
    assert os.path.isfile(cached) and tok.vocab_file == cached
    n = len(server.requests)
    ErnieTokenizer.from_pretrained("ernie-3.0-nano-zh")
    assert len(server.requests) == n  # the cache answers
    assert not [f for f in os.listdir(os.path.dirname(cached)) if f.endswith(".part")]


def test_a_folder_of_that_name_wins(server, tmp_path):
    folder = tmp_path / "ernie-1.0-base-zh"
    folder.mkdir()
    (folder / "vocab.txt").write_text(VOCAB, encoding="utf-8")
    assert ErnieTokenizer.from_pretrained("ernie-1.0-base-zh").vocab_file == str(folder / "vocab.txt")
    assert server.requests == []


def test_offline_with_nothing_cached_is_one_line_naming_the_file_and_folder(server, monkeypatch):
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    with pytest.raises(UserError) as e:
        ErnieTokenizer.from_pretrained("ernie-1.0-base-zh")
    msg = str(e.value)
    folder = os.path.join(os.environ["PPNLP_HOME"], "models", "ernie-1.0-base-zh")
    assert (
        "\n" not in msg
        and "put vocab.txt" in msg
        and folder in msg
        and hub.MODELS["ernie-1.0-base-zh"].vocab_url in msg
    )
    assert server.requests == []


def test_unreachable_server_is_one_line(server, monkeypatch):
    monkeypatch.setenv(hub.ENV_ENDPOINT, server.url + "/nothing")
    with pytest.raises(UserError) as e:
        hub.model_file("ernie-3.0-mini-zh", "vocab", flag="--tokenizer_name_or_path")
    assert str(e.value).startswith("--tokenizer_name_or_path ernie-3.0-mini-zh: the vocabulary:") and "\n" not in str(
        e.value
    )


def test_an_interrupted_download_resumes_with_a_range_request(server):
    spec = hub.MODELS["ernie-1.0-base-zh"]
    body = os.urandom(300_000)
    path = url_path(spec.weights_url)
    server.files[path] = body
    server.truncate[path] = 100_000
    with pytest.raises(UserError, match="run again"):
        hub.model_file("ernie-1.0-base-zh", "weights")
    folder = hub.model_cache_dir("ernie-1.0-base-zh")
    assert os.path.getsize(os.path.join(folder, ".model_state.pdparams.part")) == 100_000
    assert not os.path.exists(os.path.join(folder, "model_state.pdparams"))  # nothing under the final name
    got = hub.model_file("ernie-1.0-base-zh", "weights")
    assert got == os.path.join(folder, "model_state.pdparams")
    assert open(got, "rb").read() == body
    assert server.requests[-1] == (path, "bytes=100000-")


def test_a_name_without_published_weights_says_so(server):
    with pytest.raises(UserError, match="ernie-1.0-large-zh-cw"):
        hub.model_file("ernie-1.0-large-zh", "weights")
    with pytest.raises(UserError, match="known model name"):
        hub.model_file("ernie-9", "vocab")


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def fake_chnsenticorp(server, monkeypatch):
    """PaddleNLP's chnsenticorp_v2 entry with a small archive of our own (and its MD5s) on the local server."""
    rows = {
        s: "text\tlabel\n" + "".join(f"{s}第{i}句很好\t{i % 2}\n" for i in range(6)) for s in ("train", "dev", "test")
    }
    members = {f"chnsenticorp/{s}/part.0": text.encode() for s, text in rows.items()}
    archive = _tar_gz(members)
    real = hub.DATASETS["chnsenticorp_v2"]
    fake = hub.DatasetSource(
        real.name,
        real.builder,
        real.archive_url,
        _md5(archive),
        {s: (f"chnsenticorp/{s}/part.0", _md5(members[f"chnsenticorp/{s}/part.0"]), None) for s in rows},
    )
    monkeypatch.setitem(hub.DATASETS, "chnsenticorp_v2", fake)
    server.files[url_path(real.archive_url)] = archive
    return fake


def test_dataset_by_name_is_downloaded_checked_and_unpacked_as_paddlenlp_lays_it_out(fake_chnsenticorp, server):
    from ernie.finetune.datasets import load_dataset
    from ernie.finetune.seq_cls import SeqClsTask

    splits = load_dataset(SeqClsTask, "chnsenticorp_v2", None, None, None, None, needed=("train", "dev"))
    assert len(splits.train) == 6 and len(splits.dev) == 6 and splits.labels == ["0", "1"]
    root = os.path.join(os.environ["PPNLP_HOME"], "datasets", "ChnSentiCorpV2")
    assert os.path.isfile(os.path.join(root, "chnsenticorp", "train", "part.0"))
    n = len(server.requests)
    assert hub.dataset_dir("chnsenticorp_v2") == root
    assert len(server.requests) == n


def test_a_dataset_archive_with_the_wrong_md5_is_refused_and_removed(fake_chnsenticorp, server, monkeypatch):
    monkeypatch.setitem(
        hub.DATASETS, "chnsenticorp_v2", hub.DatasetSource(**{**fake_chnsenticorp.__dict__, "archive_md5": "0" * 32})
    )
    with pytest.raises(UserError, match="MD5"):
        hub.dataset_dir("chnsenticorp_v2")
    root = os.path.join(os.environ["PPNLP_HOME"], "datasets", "ChnSentiCorpV2")
    assert not [f for f in os.listdir(root) if "chnsenticorp" in f]


def test_clue_spelling():
    assert hub.canonical_dataset("clue afqmc") == "afqmc" == hub.canonical_dataset("afqmc")
    assert hub.dataset_source("clue  tnews").builder == "Clue"


def test_shipped_configs_are_the_hub_configs():
    from ernie.configuration import ErnieConfig

    for name in hub.known_models():
        assert ErnieConfig.from_pretrained(name) == ErnieConfig.from_dict(hub.model_config(name)), name


# ------------------------------------------------------------------------------------------------ PaddleNLP oracle
@pytest.mark.compat
def test_the_tables_are_paddlenlps():
    pytest.importorskip("paddlenlp")
    from paddlenlp.transformers import ErnieConfig as PConfig
    from paddlenlp.transformers import ErnieTokenizer as PTok
    from paddlenlp.transformers.ernie.configuration import (
        ERNIE_PRETRAINED_INIT_CONFIGURATION,
        ERNIE_PRETRAINED_RESOURCE_FILES_MAP,
    )

    for name, spec in hub.MODELS.items():
        if name == "ernie-1.0-large-zh":  # ours, not a PaddleNLP name
            assert name not in ERNIE_PRETRAINED_INIT_CONFIGURATION
            continue
        assert spec.config == ERNIE_PRETRAINED_INIT_CONFIGURATION[name], name
        assert spec.weights_url == ERNIE_PRETRAINED_RESOURCE_FILES_MAP["model_state"][name]
        assert spec.vocab_url == PTok.pretrained_resource_files_map["vocab_file"][name]
        assert spec.tokenizer == PTok.pretrained_init_configuration[name]
        full = PConfig(**spec.config).to_dict()
        for key, value in hub.model_config(name).items():
            if key != "model_type":
                assert full[key] == value, (name, key)
    import paddlenlp.datasets.clue as clue
    import paddlenlp.datasets.cmrc2018 as cmrc

    for name, src in hub.DATASETS.items():
        if src.builder == "Clue":
            cfg = clue.Clue.BUILDER_CONFIGS[name]
            assert (src.archive_url, src.archive_md5) == (cfg["url"], cfg["md5"])
            for split, (rel, md5, _) in src.files.items():
                assert [rel, md5] == list(cfg["splits"][split][:2]), (name, split)
        elif name == "cmrc2018":
            for split, (rel, md5, url) in src.files.items():
                m = cmrc.CMRC2018.SPLITS["trial" if split == "test" else split]
                assert (rel, md5, url) == (m.file, m.md5, m.URL)
        else:
            import importlib

            module = importlib.import_module(f"paddlenlp.datasets.{name}")
            builder = getattr(module, src.builder)
            assert (src.archive_url, src.archive_md5) == (builder.URL, builder.MD5), name
            for split, (rel, md5, _) in src.files.items():
                assert (rel, md5) == tuple(builder.SPLITS[split][:2]), (name, split)


ERNIE3_TINY = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 24,
    "intermediate_size": 48,
    "initializer_range": 0.02,
    "max_position_embeddings": 2048,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "task_type_vocab_size": 16,
    "type_vocab_size": 4,
    "use_task_id": True,
    "vocab_size": 64,
}


@pytest.mark.compat
def test_ernie3_shaped_weights_by_name_match_paddlenlp(server, monkeypatch):
    """An ERNIE 3.0-shaped model (task-type embeddings, 4 token types, 2048 positions) published under a name loads
    by that name and computes PaddleNLP's outputs; fine-tuning's build_model loads it too."""
    paddle = pytest.importorskip("paddle")
    pnlp = pytest.importorskip("paddlenlp.transformers")
    from ernie.finetune.seq_cls import SeqClsTask
    from ernie.modeling import ErnieModel

    base = "https://bj.bcebos.com/paddlenlp/models/transformers/test3"
    spec = hub.ModelSpec("ernie-3.0-test-zh", ERNIE3_TINY, f"{base}/w.pdparams", f"{base}/vocab.txt")
    monkeypatch.setitem(hub.MODELS, spec.name, spec)
    paddle.seed(3)
    theirs = pnlp.ErnieModel(pnlp.ErnieConfig(**ERNIE3_TINY, task_id=1))
    theirs.eval()
    buf = io.BytesIO()
    paddle.save(theirs.state_dict(), buf)
    server.files[url_path(spec.weights_url)] = buf.getvalue()
    server.files[url_path(spec.vocab_url)] = VOCAB.encode()

    ours = ErnieModel.from_pretrained(spec.name, task_id=1)
    assert ours.load_report == {"missing": [], "unexpected": []}
    ids = paddle.to_tensor(np.random.RandomState(0).randint(1, 64, size=(2, 9)).astype("int64"))
    np.testing.assert_allclose(ours(ids)[0].numpy(), theirs(ids)[0].numpy(), rtol=1e-5, atol=1e-5)
    model = SeqClsTask.build_model(spec.name, ["0", "1"])
    assert model.load_report["missing"] == ["classifier.weight", "classifier.bias"]
    assert json.dumps(model.config.to_dict())  # serialisable as config.json
