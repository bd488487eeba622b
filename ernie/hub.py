"""Names of PaddleNLP's models and datasets, resolved as PaddleNLP 2.8.1 resolves them, offline first.

Contract (docs/design.md, "Names"):

- A model name (``ernie-1.0-base-zh``, ``ernie-3.0-medium-zh``, ``ernie-tiny``, ... :data:`MODELS`) gives its
  config (PaddleNLP's ``pretrained_init_configuration`` entry over the defaults of PaddleNLP's ``ErnieConfig``:
  :func:`model_config`, no file needed), its vocabulary and, where a command loads weights, its pretrained weights
  (:func:`model_file`). A directory of that name wins over the name (callers check ``os.path.isdir`` first, as
  PaddleNLP does). Files are looked for in PaddleNLP's download cache, ``$PPNLP_HOME/models/<name>/`` (default
  ``~/.paddlenlp/models``) under the names PaddleNLP 2.8.1 gives them (``model_state.pdparams``; the vocabulary
  under its URL's file name, e.g. ``vocab.txt``, ``ernie_3.0_base_zh_vocab.txt``), then downloaded from PaddleNLP's
  published URL into that folder.
- A dataset name (``chnsenticorp_v2``, ``cmrc2018``, ``afqmc`` or ``clue afqmc`` ... :data:`DATASETS`) gives the
  directory holding its files as PaddleNLP's builder lays them out: ``$PPNLP_HOME/datasets/<Builder>/``
  (:func:`dataset_dir`), checked against PaddleNLP's MD5 of every file, else its archive (or files) downloaded,
  checked and unpacked there as PaddleNLP's ``get_path_from_url`` unpacks it.
- Downloads: a progress bar on stderr, resumable (a ``.<file>.part`` beside the target, continued with an HTTP
  ``Range`` request), checked against PaddleNLP's MD5 where it lists one (datasets; it lists none for model files:
  the size the server announced is checked instead), renamed into place only when complete. ``ERNIE_OFFLINE=1``
  never downloads. ``ERNIE_DOWNLOAD_ENDPOINT=URL`` replaces PaddleNLP's hosts (``https://bj.bcebos.com/paddlenlp``,
  ``https://paddlenlp.bj.bcebos.com``) with ``URL`` (a mirror; the tests' local server).
- Every failure is one :class:`~ernie.utils.UserError` line; a file that cannot be had names the file, the URL and
  the folder to put it in.

Numpy-free and Paddle-free (stdlib + tqdm): the tokenizer and the config build on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from typing import Any

from ernie.utils import UserError, fsync_dir

ENV_OFFLINE = "ERNIE_OFFLINE"
ENV_ENDPOINT = "ERNIE_DOWNLOAD_ENDPOINT"
PADDLENLP_HOSTS = ("https://bj.bcebos.com/paddlenlp", "https://paddlenlp.bj.bcebos.com")
WEIGHTS_FILE = "model_state.pdparams"  # PaddleNLP saves every downloaded *.pdparams under this name
TIMEOUT_S = 60.0
CHUNK = 1 << 20

# PaddleNLP 2.8.1's ErnieConfig.__init__ defaults: what a pretrained_init_configuration entry leaves out.
PADDLENLP_CONFIG_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "task_id": 0,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "task_type_vocab_size": 3,
    "type_vocab_size": 16,
    "initializer_range": 0.02,
    "pad_token_id": 0,
    "pool_act": "tanh",
    "layer_norm_eps": 1e-12,
    "use_task_id": False,
}

_M = "https://bj.bcebos.com/paddlenlp/models/transformers"


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model name: its config entry, weights URL (None: PaddleNLP publishes none) and vocab URL."""

    name: str
    config: dict[str, Any]
    weights_url: str | None
    vocab_url: str
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"do_lower_case": True})
    note: str = ""

    def full_config(self) -> dict[str, Any]:
        return {**PADDLENLP_CONFIG_DEFAULTS, **self.config, "model_type": "ernie"}


def _base(**kw: Any) -> dict[str, Any]:
    return {"attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "initializer_range": 0.02, **kw}


_ERNIE1 = _base(
    hidden_act="relu",
    hidden_size=768,
    max_position_embeddings=513,
    num_attention_heads=12,
    num_hidden_layers=12,
    pad_token_id=0,
    type_vocab_size=2,
    vocab_size=18000,
)
_LARGE_CW = _base(
    hidden_act="relu",
    hidden_size=1024,
    intermediate_size=3072,
    max_position_embeddings=512,
    num_attention_heads=16,
    num_hidden_layers=24,
    pad_token_id=0,
    type_vocab_size=2,
    vocab_size=18000,
)


def _ernie3(hidden: int, inter: int | None, heads: int, layers: int, task_types: int) -> dict[str, Any]:
    cfg = _base(
        hidden_act="gelu",
        hidden_size=hidden,
        max_position_embeddings=2048,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        task_type_vocab_size=task_types,
        type_vocab_size=4,
        use_task_id=True,
        vocab_size=40000,
    )
    if inter is not None:
        cfg["intermediate_size"] = inter
    return cfg


# PaddleNLP 2.8.1: paddlenlp/transformers/ernie/configuration.py (ERNIE_PRETRAINED_INIT_CONFIGURATION,
# ERNIE_PRETRAINED_RESOURCE_FILES_MAP) and tokenizer.py (ErnieTokenizer's vocab_file map). tests/test_hub.py
# compares every entry with the installed PaddleNLP (compat marker).
MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("ernie-1.0", _ERNIE1, f"{_M}/ernie/ernie_v1_chn_base.pdparams", f"{_M}/ernie/vocab.txt"),
        ModelSpec("ernie-1.0-base-zh", _ERNIE1, f"{_M}/ernie/ernie_v1_chn_base.pdparams", f"{_M}/ernie/vocab.txt"),
        ModelSpec(
            "ernie-1.0-base-zh-cw",
            _base(
                hidden_act="gelu",
                hidden_size=768,
                max_position_embeddings=512,
                num_attention_heads=12,
                num_hidden_layers=12,
                task_type_vocab_size=3,
                type_vocab_size=4,
                use_task_id=True,
                vocab_size=40000,
            ),
            f"{_M}/ernie/ernie_1.0_base_zh_cw.pdparams",
            f"{_M}/ernie/ernie_1.0_base_zh_cw_vocab.txt",
        ),
        ModelSpec(
            "ernie-1.0-large-zh-cw", _LARGE_CW, f"{_M}/ernie/ernie_1.0_large_zh_cw.pdparams", f"{_M}/ernie/vocab.txt"
        ),
        # Not a PaddleNLP name: the shipped configs/models/ernie-1.0-large-zh.json (the shapes of ernie-1.0-large-zh-cw)
        # with the ERNIE 1.0 vocabulary, for pretraining from scratch. PaddleNLP publishes no weights under it.
        ModelSpec(
            "ernie-1.0-large-zh",
            {**_LARGE_CW, "layer_norm_eps": 1e-12},
            None,
            f"{_M}/ernie/vocab.txt",
            note="PaddleNLP publishes no weights named ernie-1.0-large-zh; its pretrained ERNIE 1.0 large is "
            "ernie-1.0-large-zh-cw",
        ),
        ModelSpec(
            "ernie-tiny",
            _base(
                hidden_act="relu",
                hidden_size=1024,
                intermediate_size=4096,
                max_position_embeddings=600,
                num_attention_heads=16,
                num_hidden_layers=3,
                pad_token_id=0,
                type_vocab_size=2,
                vocab_size=50006,
            ),
            f"{_M}/ernie_tiny/ernie_tiny.pdparams",
            f"{_M}/ernie_tiny/vocab.txt",
            note="AutoTokenizer gives ernie-tiny PaddleNLP's ErnieTokenizer over this vocab.txt (as here), not the "
            "sentencepiece ErnieTinyTokenizer",
        ),
        ModelSpec(
            "ernie-2.0-base-zh",
            _base(
                hidden_act="relu",
                hidden_size=768,
                max_position_embeddings=513,
                num_attention_heads=12,
                num_hidden_layers=12,
                type_vocab_size=4,
                vocab_size=18000,
            ),
            f"{_M}/ernie_2.0/ernie_2.0_base_zh.pdparams",
            f"{_M}/ernie_2.0/ernie_2.0_base_zh_vocab.txt",
        ),
        ModelSpec(
            "ernie-2.0-large-zh",
            _base(
                hidden_act="relu",
                hidden_size=1024,
                intermediate_size=4096,
                max_position_embeddings=512,
                num_attention_heads=16,
                num_hidden_layers=24,
                type_vocab_size=4,
                vocab_size=12800,
            ),
            f"{_M}/ernie_2.0/ernie_2.0_large_zh.pdparams",
            f"{_M}/ernie_2.0/ernie_2.0_large_zh_vocab.txt",
        ),
        *[
            ModelSpec(
                f"ernie-3.0-{size}-zh",
                _ernie3(*shape),
                f"{_M}/ernie_3.0/ernie_3.0_{size}_zh.pdparams",
                f"{_M}/ernie_3.0/ernie_3.0_{size}_zh_vocab.txt",
            )
            for size, shape in (
                ("base", (768, None, 12, 12, 3)),
                ("xbase", (1024, 4096, 16, 20, 16)),
                ("medium", (768, 3072, 12, 6, 16)),
                ("mini", (384, 1536, 12, 6, 16)),
                ("micro", (384, 1536, 12, 4, 16)),
                ("nano", (312, 1248, 12, 4, 16)),
            )
        ],
    ]
}


@dataclass(frozen=True)
class DatasetSource:
    """Where PaddleNLP's builder keeps a dataset (``datasets/<builder>/``), what it downloads, and the MD5s."""

    name: str
    builder: str  # PaddleNLP's DatasetBuilder class name: the folder under $PPNLP_HOME/datasets
    archive_url: str | None  # None: every file has its own URL
    archive_md5: str | None
    files: dict[str, tuple[str, str, str | None]]  # our split -> (path under the builder folder, md5, url or None)
    subdir: str = ""  # the --data_dir inside the builder folder, where ernie.finetune.datasets finds the files


_D = "https://bj.bcebos.com/paddlenlp/datasets"


def _archive(name, builder, url, md5, files, subdir=""):
    return DatasetSource(name, builder, url, md5, {s: (p, m, None) for s, (p, m) in files.items()}, subdir)


def _clue(name: str, md5: str, files: dict[str, tuple[str, str]]) -> DatasetSource:
    return _archive(name, "Clue", f"{_D}/{name}_public.zip", md5, files)


# PaddleNLP 2.8.1: paddlenlp/datasets/<name>.py (URL, MD5, SPLITS) and clue.py (BUILDER_CONFIGS). Only the splits
# ernie.finetune.datasets reads (cmrc2018's "trial" is its test split).
DATASETS: dict[str, DatasetSource] = {
    s.name: s
    for s in [
        _archive(
            "chnsenticorp_v2",
            "ChnSentiCorpV2",
            "https://paddlenlp.bj.bcebos.com/datasets/data-chnsenticorp.tar.gz",
            "e336e76d7be4ecd5479083d5b8f771e4",
            {
                "train": ("chnsenticorp/train/part.0", "3fac2659547f1ddf90d223b8ed31f22f"),
                "dev": ("chnsenticorp/dev/part.0", "a3a853bfb3af4a592fc4df24b56c88a7"),
                "test": ("chnsenticorp/test/part.0", "6bfc8f35f523d2fdf12648d9d02778ff"),
            },
        ),
        _archive(
            "chnsenticorp",
            "ChnSentiCorp",
            f"{_D}/ChnSentiCorp.zip",
            "7ef61b08ad10fbddf2ba97613f071561",
            {
                "train": ("ChnSentiCorp/ChnSentiCorp/train.tsv", "689360c4a4a9ce8d8719ed500ae80907"),
                "dev": ("ChnSentiCorp/ChnSentiCorp/dev.tsv", "20c77cc2371634731a367996b097ec0a"),
                "test": ("ChnSentiCorp/ChnSentiCorp/test.tsv", "9b4dc7d1e4ada48c645b7e938592f49c"),
            },
        ),
        _archive(
            "lcqmc",
            "LCQMC",
            f"{_D}/lcqmc.zip",
            "7069fa0cffbd2110845869c61f83814a",
            {
                "train": ("lcqmc/lcqmc/train.tsv", "479d94fe575981f236319f2a5b8b3c03"),
                "dev": ("lcqmc/lcqmc/dev.tsv", "089329fb44ef26155baef9c9c8c823ba"),
                "test": ("lcqmc/lcqmc/test.tsv", "a4a483f2f871d57e0f3894fca0d0f8f0"),
            },
            subdir="lcqmc",
        ),
        _archive(
            "xnli_cn",
            "XNLI_CN",
            f"{_D}/xnli_cn.tar.gz",
            "aaf6de381a2553d61d8e6fad4ba96499",
            {
                "train": ("xnli_cn.tar/xnli_cn/train/part-0", "b0e4df29af8413eb935a2204de8958b7"),
                "dev": ("xnli_cn.tar/xnli_cn/dev/part-0", "401a2178e15f4b0c35812ab4a322bd94"),
                "test": ("xnli_cn.tar/xnli_cn/test/part-0", "71b043be8207e54185e761fca00ba3d7"),
            },
            subdir="xnli_cn.tar",
        ),
        _archive(
            "msra_ner",
            "MsraNer",
            f"{_D}/msra_ner.tar.gz",
            "f1aadbbf328ea2fa50c9c2b56db0d31e",
            {
                "train": ("msra_ner/train.tsv", "e5b4b734ef91861384f441456ad995dd"),
                "test": ("msra_ner/test.tsv", "40b26ae09b63af78ea3a91ac8b8ae303"),
            },
        ),
        _archive(
            "peoples_daily_ner",
            "PeoplesDailyNER",
            f"{_D}/peoples_daily_ner.tar.gz",
            "a44ff9c4b37b48add9ddc17994d5620c",
            {
                "train": ("peoples_daily_ner/train.tsv", "67d3c93a37daba60ef43c03271f119d7"),
                "dev": ("peoples_daily_ner/dev.tsv", "ec772f3ba914bca5269f6e785bb3375d"),
                "test": ("peoples_daily_ner/test.tsv", "2f27ae68b5f61d6553ffa28bb577c8a7"),
            },
        ),
        _archive(
            "dureader_robust",
            "DuReaderRobust",
            f"{_D}/dureader_robust-data.tar.gz",
            "82f3d191a115ec17808856866787606e",
            {
                "train": ("dureader_robust-data/train.json", "800a3dcb742f9fdf9b11e0a83433d4be"),
                "dev": ("dureader_robust-data/dev.json", "ae73cec081eaa28a735204c4898a2222"),
                "test": ("dureader_robust-data/test.json", "e0e8aa5c7b6d11b6fc3935e29fc7746f"),
            },
        ),
        DatasetSource(
            "cmrc2018",
            "CMRC2018",
            None,
            None,
            {
                "train": ("cmrc2018_train.json", "7fb714b479c7f40fbb16acabd7af0ede", f"{_D}/cmrc/cmrc2018_train.json"),
                "dev": ("cmrc2018_dev.json", "853b80709ff2d071f9fce196521b843c", f"{_D}/cmrc/cmrc2018_dev.json"),
                "test": ("cmrc2018_trial.json", "070f8ade5b15cfdb095c1fcef9cf43c1", f"{_D}/cmrc/cmrc2018_trial.json"),
            },
        ),
        _clue(
            "afqmc",
            "3377b559bb4e61d03a35282550902ca0",
            {
                "train": ("afqmc_public/train.json", "319cf775353af9473140abca4052b89a"),
                "dev": ("afqmc_public/dev.json", "307154b59cb6c3e68a0f39c310bbd364"),
                "test": ("afqmc_public/test.json", "94b925f23a9615dd08199c4013f761f4"),
            },
        ),
        _clue(
            "tnews",
            "38186ed0a751bc33e3ae0c1b59319777",
            {
                "train": ("tnews_public/train.json", "25c021725309a3330736380a230850fd"),
                "dev": ("tnews_public/dev.json", "f0660a3339a32e764075c801b42ece3c"),
                "test": ("tnews_public/test.json", "045a6c4f59bf1a066c4a0d7afe6cd2b4"),
            },
        ),
        _clue(
            "iflytek",
            "19e4b19947db126f69aae18db0da2b87",
            {
                "train": ("iflytek_public/train.json", "fc9a21700c32ee3efee3fc283e9ac560"),
                "dev": ("iflytek_public/dev.json", "79b7d95bddeb11cd54198fd077992704"),
                "test": ("iflytek_public/test.json", "ea764519ddb4369767d07664afde3325"),
            },
        ),
        _clue(
            "ocnli",
            "acb426f6f3345076c6ce79239e7bc307",
            {
                "train": ("ocnli_public/train.50k.json", "d38ec492ef086a894211590a18ab7596"),
                "dev": ("ocnli_public/dev.json", "3481b456bee57a3c9ded500fcff6834c"),
                "test": ("ocnli_public/test.json", "680ff24e6b3419ff8823859bc17936aa"),
            },
        ),
        _clue(
            "cmnli",
            "e0e8caefd9b3491220c18b466233f2ff",
            {
                "train": ("cmnli_public/train.json", "7d02308650cd2a0e183bf599ca9bb263"),
                "dev": ("cmnli_public/dev.json", "0b16a50a297a9afb1ce5385ee4dd3d9c"),
                "test": ("cmnli_public/test.json", "804cb0bb67266983d59d1c855e6b03b0"),
            },
        ),
        _clue(
            "cluewsc2020",
            "2e387e20e93eeab0ffaded5b0d2dfd3d",
            {
                "train": ("cluewsc2020_public/train.json", "afd235dcf8cdb89ee1a21d0a4823eecc"),
                "dev": ("cluewsc2020_public/dev.json", "bad8cd6fa0916fc37ac96b8ce316714a"),
                "test": ("cluewsc2020_public/test.json", "27614454cc26be6fcab5bbd9a45967ff"),
            },
        ),
        _clue(
            "csl",
            "394a2ccbf6ddd7e331be4d5d7798f0f6",
            {
                "train": ("csl_public/train.json", "e927948b4e0eb4992fe9f45a77446bf5"),
                "dev": ("csl_public/dev.json", "6c2ab8dd3b4785829ead94b05a1cb957"),
                "test": ("csl_public/test.json", "ebfb89575355f00dcd9b18f8353547cd"),
            },
        ),
    ]
}


# ----------------------------------------------------------------------------------------------------- places
def ppnlp_home() -> str:
    """PaddleNLP's root: ``$PPNLP_HOME``, else ``~/.paddlenlp`` (paddlenlp/utils/env.py)."""
    home = os.environ.get("PPNLP_HOME")
    if home:
        if os.path.exists(home) and not os.path.isdir(home):
            raise UserError(f"PPNLP_HOME={home}: not a directory")
        return home
    return os.path.join(os.path.expanduser("~"), ".paddlenlp")


def model_cache_dir(name: str) -> str:
    return os.path.join(ppnlp_home(), "models", name)


def dataset_cache_dir(builder: str) -> str:
    return os.path.join(ppnlp_home(), "datasets", builder)


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no", "off")


def mirrored(url: str) -> str:
    """``url`` with PaddleNLP's host replaced by ``$ERNIE_DOWNLOAD_ENDPOINT`` when it is set."""
    endpoint = os.environ.get(ENV_ENDPOINT, "").rstrip("/")
    if endpoint:
        for host in PADDLENLP_HOSTS:
            if url.startswith(host + "/"):
                return endpoint + url[len(host) :]
    return url


# ------------------------------------------------------------------------------------------------------ models
def model_spec(name: str) -> ModelSpec | None:
    return MODELS.get(str(name))


def known_models() -> list[str]:
    return sorted(MODELS)


def model_config(name: str) -> dict[str, Any] | None:
    """The full config dict (PaddleNLP's keys) of a built-in name, or None for a name this module does not know."""
    spec = model_spec(name)
    return spec.full_config() if spec is not None else None


def vocab_file_name(spec: ModelSpec) -> str:
    """The vocabulary's file name in PaddleNLP's cache: its URL's last part."""
    return spec.vocab_url.rsplit("/", 1)[-1]


def model_file(name: str, kind: str, flag: str = "") -> str:
    """Path of a built-in model's ``"vocab"`` or ``"weights"`` file: PaddleNLP's cache, else downloaded into it.
    ``flag`` (e.g. ``--model_name_or_path``) starts the error messages."""
    who = f"{flag} {name}".strip()
    spec = MODELS.get(name)
    if spec is None:
        raise UserError(f"{who}: not a directory or a known model name (known: {', '.join(known_models())})")
    folder = model_cache_dir(name)
    if kind == "vocab":
        return fetch(spec.vocab_url, folder, vocab_file_name(spec), what=f"{who}: the vocabulary")
    if kind != "weights":
        raise ValueError(f"kind must be 'vocab' or 'weights', not {kind!r}")
    if spec.weights_url is None:
        raise UserError(f"{who}: {spec.note or 'PaddleNLP publishes no weights for it'}")
    return fetch(spec.weights_url, folder, WEIGHTS_FILE, what=f"{who}: the pretrained weights")


# ---------------------------------------------------------------------------------------------------- datasets
def dataset_source(name: str | None) -> DatasetSource | None:
    return DATASETS.get(canonical_dataset(name)) if name else None


def canonical_dataset(name: str | None) -> str:
    """``"clue afqmc"`` (PaddleNLP's ``load_dataset("clue", "afqmc")`` spelling) -> ``"afqmc"``; others unchanged."""
    text = " ".join(str(name or "").split())
    head, _, rest = text.partition(" ")
    return rest if head == "clue" and rest else text


def dataset_dir(name: str, splits: tuple[str, ...] = ("train", "dev", "test"), flag: str = "--dataset") -> str:
    """The ``--data_dir`` of dataset ``name`` in PaddleNLP's cache (downloaded and unpacked there if need be):
    every file of ``splits`` that the dataset has is present and matches PaddleNLP's MD5."""
    src = dataset_source(name)
    if src is None:
        raise UserError(f"{flag} {name}: no PaddleNLP download is known for it (known: {', '.join(sorted(DATASETS))})")
    root = dataset_cache_dir(src.builder)
    wanted = {s: v for s, v in src.files.items() if s in splits} or src.files

    def bad() -> list[str]:
        return [rel for rel, md5, _ in wanted.values() if not _md5_ok(os.path.join(root, rel), md5)]

    if not bad():
        return os.path.join(root, src.subdir) if src.subdir else root
    if src.archive_url is None:  # one URL per file (cmrc2018)
        for rel, md5, url in wanted.values():
            path = os.path.join(root, rel)
            if not _md5_ok(path, md5):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # a stale or damaged copy: fetched again
                assert url is not None
                fetch(url, os.path.dirname(path), os.path.basename(path), md5=md5, what=f"{flag} {name}")
    else:
        archive_name = src.archive_url.rsplit("/", 1)[-1]
        archive = fetch(src.archive_url, root, archive_name, md5=src.archive_md5, what=f"{flag} {name}")
        unpack(archive, root, what=f"{flag} {name}")
    missing = bad()
    if missing:
        raise UserError(
            f"{flag} {name}: {os.path.join(root, missing[0])} is missing or does not match PaddleNLP's MD5 after "
            "the download; remove it and run again"
        )
    return os.path.join(root, src.subdir) if src.subdir else root


def unpack(archive: str, root: str, what: str = "archive") -> None:
    """Unpack a .zip / .tar(.gz) as PaddleNLP's ``get_path_from_url`` does: an archive of one top-level folder into
    ``root``, any other into ``root/<archive name without its last extension>``; members are written into a
    temporary folder first and moved into place when all are out (no half-unpacked tree under the final names)."""
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=root)
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    names = z.namelist()
                    z.extractall(tmp)  # zipfile drops absolute paths and ".." itself
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive, "r:*") as t:
                    names = t.getnames()
                    if hasattr(tarfile, "data_filter"):
                        t.extractall(tmp, filter="data")
                    else:  # Python < 3.10.12: refuse members that leave the folder
                        for m in t.getmembers():
                            target = os.path.realpath(os.path.join(tmp, m.name))
                            if not target.startswith(os.path.realpath(tmp) + os.sep) or m.issym() or m.islnk():
                                raise UserError(f"{what}: {archive}: unsafe member {m.name!r}")
                        t.extractall(tmp)
            else:
                raise UserError(f"{what}: {archive} is neither a zip nor a tar archive")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
            raise UserError(f"{what}: cannot unpack {archive} ({e})") from None
        tops = {n.replace("\\", "/").split("/")[0] for n in names if n.strip("/")}
        if len(tops) == 1:
            dest, entries = root, sorted(tops)
        else:
            dest = os.path.join(root, os.path.splitext(os.path.basename(archive))[0])
            entries = sorted(os.listdir(tmp))
        os.makedirs(dest, exist_ok=True)
        for entry in entries:
            target = os.path.join(dest, entry)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
            os.replace(os.path.join(tmp, entry), target)
        fsync_dir(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- downloads
def md5_of(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _md5_ok(path: str, md5: str | None) -> bool:
    return os.path.isfile(path) and (md5 is None or md5_of(path) == md5)


def fetch(url: str, folder: str, filename: str, md5: str | None = None, what: str = "download") -> str:
    """``folder/filename``: the file if it is there (and matches ``md5``), else downloaded from ``url`` (through
    ``$ERNIE_DOWNLOAD_ENDPOINT``) into it. Resumes a ``.<filename>.part`` left by an interrupted download."""
    target = os.path.join(folder, filename)
    if os.path.isfile(target) and (md5 is None or md5_of(target) == md5):
        return target
    source = mirrored(url)
    put_it_there = f"put {filename} (from {url}) into {folder}"
    if offline():
        raise UserError(
            f"{what}: {target} not found, and downloads are off (offline: {ENV_OFFLINE} is set); {put_it_there}"
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what}: cannot create {folder} ({e.strerror or e})") from None
    part = os.path.join(folder, f".{filename}.part")
    try:
        _download(source, part, filename)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise UserError(
            f"{what}: {target} not found and {source} cannot be downloaded ({reason}); {put_it_there}"
        ) from None
    if md5 is not None:
        got = md5_of(part)
        if got != md5:
            os.unlink(part)
            raise UserError(f"{what}: {source}: MD5 {got} is not PaddleNLP's {md5} (download removed; run again)")
    os.replace(part, target)
    fsync_dir(folder)
    return target


def _download(url: str, part: str, label: str) -> None:
    """Download ``url`` into ``part``, continuing from its current size with an HTTP Range request; a complete
    body (200, or 206 up to the announced total) is checked against the size the server announced."""
    from tqdm import tqdm  # delay: a progress bar only when something is downloaded

    have = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ernie-toolkit", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is already complete (or larger than the file): start over
            os.unlink(part)
            return _download(url, part, label)
        raise
    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        if status == 206:
            content_range = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
            start = int(content_range.split()[1].split("-")[0]) if content_range.startswith("bytes ") else have
            if start != have:
                raise ValueError(f"the server resumed at byte {start}, not {have}")
            total = int(content_range.rsplit("/", 1)[-1]) if "/" in content_range else None
            mode = "ab"
        else:  # 200: the whole file (the server ignored the Range)
            have, mode = 0, "wb"
            total = int(length) if length is not None else None
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"downloading {label}",
                file=sys.stderr,
                disable=None,
            ) as bar,
        ):
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise ValueError(f"incomplete: {size} of {total} bytes (run again to continue)")
    return None
