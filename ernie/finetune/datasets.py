"""Datasets by name (``--dataset``): which files a public benchmark has, how each is read, its labels and default
hyper-parameters (:data:`SPECS`), and :func:`load_dataset`, which turns ``--dataset``/``--data_dir``/``--*_file``
into :class:`~data_tools.corpus.DatasetSplits`. Reading a file layout is :mod:`ernie.finetune.readers`; the built-in
sets are built by :mod:`data_tools.corpus` and listed per task in ``Task.builtin_datasets``;
:func:`dataset_help` makes the ``--dataset`` help from both.

``--dataset NAME`` without ``--data_dir`` is a built-in set of the task (``Task.builtin_datasets``), else a
benchmark found as PaddleNLP finds it: in PaddleNLP's dataset cache (``$PPNLP_HOME/datasets/<Builder>/``), else
downloaded from PaddleNLP's URL into it and checked against its MD5s (:func:`ernie.hub.dataset_dir`; offline with
nothing cached: one line naming the file and the folder to put it in). PaddleNLP's spelling ``clue afqmc`` (its
``load_dataset("clue", "afqmc")``) is the same as ``afqmc``. With ``--data_dir DIR`` it names a benchmark whose
files, as distributed (the layouts PaddleNLP's dataset builders read), sit in ``DIR`` (or in the sub-directory the
archive unpacks to, e.g. ``DIR/afqmc_public/``);
``--train_file/--dev_file/--test_file`` replace single files and are read in the same layout. A missing file is a
one-line error naming the file and the expected layout. Label ids follow PaddleNLP's label lists; the default
hyper-parameters are those of PaddleNLP's ernie-1.0 ``finetune/config.yml`` (its ``DefaultArgs`` plus the
dataset's entries), and every flag given on the command line wins over them.

``peoples_daily_ner`` is both: without ``--data_dir`` the built-in set (derived from the 1998-01 corpus), with
``--data_dir`` PaddleNLP's ``peoples_daily_ner`` files.

Files as distributed carry noise: a row that cannot be used is skipped and counted, one warning naming the first
(:class:`~ernie.finetune.readers.RowSkips`); only a file with no usable row is refused. The training split then keeps
what can become a training feature (``Task.training_examples``: for QA, questions with a text and an answer found
in the context), while dev and test keep every row that can be predicted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from data_tools.corpus import DatasetSplits, bio_labels
from ernie import hub
from ernie.utils import UserError

from . import readers as R

# PaddleNLP ernie-1.0 finetune/config.yml: DefaultArgs (the keys this toolkit has) ...
PADDLENLP_DEFAULTS = {
    "learning_rate": 5e-5,
    "num_train_epochs": 3.0,
    "batch_size": 64,
    "max_seq_length": 128,
    "weight_decay": 0.01,
    "logging_steps": 10,
    "eval_steps": 200,
    "warmup_ratio": 0.1,
}


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark's official layout: files per split (candidates, first found wins), reader, labels, defaults."""

    name: str
    task: str
    files: dict[str, tuple[str, ...]]
    layout: str
    read: Callable[[str, str], list[dict]]  # (path, split) -> examples
    labels: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- benchmarks
def _ner(path: str, split: str) -> list[dict]:
    return R.read_ner_file(path)


def _squad(path: str, split: str) -> list[dict]:
    return R.read_squad_file(path)


def _clue(name: str, convert, labels, epochs: float, skip_label=None, extra=None, trainfile="train.json"):
    sub = f"{name}_public"
    layout = {
        "clue_sentence": 'CLUE json lines {"sentence", "label"}',
        "clue_pair": 'CLUE json lines {"sentence1", "sentence2", "label"}',
        "clue_csl": 'CLUE json lines {"abst", "keyword": [...], "label"}',
        "clue_wsc": 'CLUE json lines {"text", "target": {"span1_index", "span1_text", "span2_index", '
        '"span2_text"}, "label"}',
    }[convert.__name__]
    files: dict[str, tuple[str, ...]] = {
        split: (fname, f"{sub}/{fname}")
        for split, fname in (("train", trainfile), ("dev", "dev.json"), ("test", "test.json"))
    }
    return DatasetSpec(
        name,
        "seq_cls",
        files,
        layout,
        R.clue_reader(convert, skip_label),
        tuple(labels),
        {"num_train_epochs": epochs, **(extra or {})},
    )


# PaddleNLP's label ids of msra_ner / peoples_daily_ner: the built-in NER types (data_tools.corpus) in its order
PADDLENLP_NER_LABELS = tuple(bio_labels(("PER", "ORG", "LOC"), outside_last=True))
_NER_LAYOUT = "PaddleNLP tsv with a 'text_a<TAB>label' header, characters and tags each joined by \\002"
_QA_LAYOUT = (
    'SQuAD-style JSON {"data": [{"paragraphs": [{"context", "qas": [{"id", "question", '
    '"answers": [{"text", "answer_start"}]}]}]}]}'
)

SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        _clue("afqmc", R.clue_pair, ["0", "1"], 4),
        _clue("tnews", R.clue_sentence, [str(i) for i in range(100, 117) if i != 111], 4),
        _clue("iflytek", R.clue_sentence, [str(i) for i in range(119)], 8),
        _clue(
            "ocnli",
            R.clue_pair,
            ["entailment", "contradiction", "neutral"],
            8,
            skip_label="-",
            trainfile="train.50k.json",
        ),
        _clue("cmnli", R.clue_pair, ["contradiction", "entailment", "neutral"], 3, skip_label="-"),
        _clue("cluewsc2020", R.clue_wsc, ["true", "false"], 50),
        _clue("csl", R.clue_csl, ["0", "1"], 10, extra={"max_seq_length": 256, "batch_size": 32}),
        DatasetSpec(
            "chnsenticorp",
            "seq_cls",
            {
                s: (f"{s}.tsv", f"ChnSentiCorp/{s}.tsv", f"ChnSentiCorp/ChnSentiCorp/{s}.tsv")
                for s in ("train", "dev", "test")
            },
            "tsv with a header: train 'label<TAB>text_a', dev 'qid<TAB>label<TAB>text_a', test 'qid<TAB>text_a'",
            R.tsv_reader(
                {"train": ("label", "text"), "dev": ("qid", "label", "text"), "test": ("qid", "text")},
                header={"train": ("label", "text_a"), "dev": ("qid", "label", "text_a"), "test": ("qid", "text_a")},
            ),
            ("0", "1"),
        ),
        DatasetSpec(
            "chnsenticorp_v2",
            "seq_cls",
            {s: (f"{s}/part.0", f"chnsenticorp/{s}/part.0") for s in ("train", "dev", "test")},
            "tsv 'text<TAB>label' with a header line, files train/part.0, dev/part.0, test/part.0",
            R.tsv_reader(("text", "label"), header=True, labels=("0", "1")),
            ("0", "1"),
            {"learning_rate": 5e-5, "batch_size": 16, "num_train_epochs": 8},
        ),
        DatasetSpec(
            "xnli_cn",
            "seq_cls",
            {s: (f"{s}/part-0", f"xnli_cn/{s}/part-0") for s in ("train", "dev", "test")},
            "tsv 'text_a<TAB>text_b<TAB>label' with a header line, files train/part-0, dev/part-0, test/part-0",
            R.tsv_reader(
                ("text", "text_pair", "label"),
                header=True,
                rename={"contradiction": "contradictory"},
                labels=("contradiction", "contradictory", "entailment", "neutral"),
            ),
            ("contradictory", "entailment", "neutral"),
            {"learning_rate": 1e-4, "num_train_epochs": 3, "batch_size": 256},
        ),
        DatasetSpec(
            "lcqmc",
            "seq_cls",
            {s: (f"{s}.tsv", f"lcqmc/{s}.tsv") for s in ("train", "dev", "test")},
            "tsv 'query<TAB>title<TAB>label' without a header (test may lack the label)",
            R.tsv_reader(("text", "text_pair", "label"), header=False),
            ("0", "1"),
        ),
        DatasetSpec(
            "msra_ner",
            "ner",
            {"train": ("train.tsv", "msra_ner/train.tsv"), "test": ("test.tsv", "msra_ner/test.tsv")},
            _NER_LAYOUT + "; files train.tsv, test.tsv",
            _ner,
            PADDLENLP_NER_LABELS,
            {"num_train_epochs": 3},
        ),
        DatasetSpec(
            "peoples_daily_ner",
            "ner",
            {s: (f"{s}.tsv", f"peoples_daily_ner/{s}.tsv") for s in ("train", "dev", "test")},
            _NER_LAYOUT + "; files train.tsv, dev.tsv, test.tsv",
            _ner,
            PADDLENLP_NER_LABELS,
            {"learning_rate": 5e-5, "num_train_epochs": 4, "batch_size": 128},
        ),
        DatasetSpec(
            "cmrc2018",
            "qa",
            {
                "train": ("cmrc2018_train.json", "train.json"),
                "dev": ("cmrc2018_dev.json", "dev.json"),
                "test": ("cmrc2018_trial.json", "test.json"),
            },
            _QA_LAYOUT + "; files cmrc2018_train.json, cmrc2018_dev.json (cmrc2018_trial.json as test)",
            _squad,
            (),
            {"learning_rate": 5e-5, "num_train_epochs": 1, "batch_size": 32, "max_seq_length": 384},
        ),
        DatasetSpec(
            "dureader_robust",
            "qa",
            {s: (f"{s}.json", f"dureader_robust-data/{s}.json") for s in ("train", "dev", "test")},
            _QA_LAYOUT + "; files train.json, dev.json, test.json",
            _squad,
            (),
            {"num_train_epochs": 1, "batch_size": 12, "max_seq_length": 384},
        ),
    ]
}


# --------------------------------------------------------------------------------------------------- lookup
def dataset_defaults(name: str | None, task_cls) -> dict:
    """The default flag values of benchmark ``name`` (empty for built-in or unknown names)."""
    name = hub.canonical_dataset(name) if name else name
    spec = SPECS.get(name or "")
    if spec is None or spec.task != task_cls.name or name in task_cls.builtin_datasets:
        return {}
    return {**PADDLENLP_DEFAULTS, **spec.defaults}


def _spec_for(name: str, task_cls) -> DatasetSpec:
    name = hub.canonical_dataset(name)
    spec = SPECS.get(name)
    builtin = ", ".join(task_cls.builtin_datasets) or "none"
    official = ", ".join(n for n, s in SPECS.items() if s.task == task_cls.name)
    if spec is None:
        raise UserError(
            f"--dataset {name}: unknown dataset for {task_cls.name}; built-in: {builtin}; in their "
            f"official layout (with --data_dir): {official}"
        )
    if spec.task != task_cls.name:
        raise UserError(f"--dataset {name}: a {spec.task} dataset, not {task_cls.name}")
    return spec


def find_file(spec: DatasetSpec, data_dir: str, split: str) -> str | None:
    for rel in spec.files.get(split, ()):
        path = os.path.join(data_dir, rel)
        if os.path.isfile(path):
            return path
    return None


def load_dataset(
    task_cls,
    name: str | None,
    data_dir: str | None,
    train_file: str | None,
    dev_file: str | None,
    test_file: str | None,
    needed: tuple[str, ...] = (),
) -> DatasetSplits:
    """The splits of ``--dataset``/``--data_dir`` and/or the given files (see the module docstring). A split in
    ``needed`` whose file is missing is an error naming the file and the expected layout."""
    given = {"train": train_file, "dev": dev_file, "test": test_file}
    name = hub.canonical_dataset(name) if name else name
    if name and not data_dir and name in task_cls.builtin_datasets:
        if any(given.values()):
            raise UserError(
                f"--dataset {name}: a built-in dataset; give either it or --train_file/--dev_file/"
                f"--test_file (or --data_dir for the benchmark's own files)"
            )
        return task_cls.builtin_datasets[name]()
    spec = _spec_for(name, task_cls) if name else None
    if spec is not None and not data_dir and not any(given.values()):
        if hub.dataset_source(name) is None:
            raise UserError(
                f"--dataset {name}: no download is known for it; pass --data_dir DIR holding "
                f"{', '.join(v[0] for v in spec.files.values())} ({spec.layout})"
            )
        try:
            data_dir = hub.dataset_dir(spec.name, needed or ("train", "dev", "test"))  # PaddleNLP's cache, else its URL
        except UserError as e:  # offline or unreachable: the other way to give the files
            raise UserError(
                f"{e}; or pass --data_dir DIR holding {', '.join(v[0] for v in spec.files.values())} ({spec.layout})"
            ) from None
    if data_dir and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir}: no such directory")
    read = spec.read if spec is not None else (lambda path, split: task_cls.read_file(path))
    layout = spec.layout if spec is not None else task_cls.file_format
    paths = {}
    for split in ("train", "dev", "test"):
        file = given[split]
        path = file or (find_file(spec, data_dir, split) if spec is not None and data_dir else None)
        if file and not os.path.isfile(file):
            raise UserError(f"--{split}_file {file}: no such file (expected {layout})")
        if path is None and split in needed and spec is not None and data_dir:
            expected = " or ".join(spec.files.get(split, ("(none in this dataset)",)))
            raise UserError(f"--data_dir {data_dir}: no {split} file {expected} for {name} (expected {layout})")
        paths[split] = path
    splits = {split: read(path, split) if path else [] for split, path in paths.items()}
    if splits["train"]:
        splits["train"] = task_cls.training_examples(splits["train"], paths["train"])
    if spec is not None and spec.labels:
        labels = list(spec.labels)
    else:
        source = next((s for s in ("train", "dev", "test") if splits[s]), None)
        labels = task_cls.labels_from_examples(splits[source]) if source else []
    return DatasetSplits(splits["train"], splits["dev"], splits["test"], labels)


def describe() -> list[tuple[str, str, str]]:
    """(name, task, expected files and layout) of every benchmark, for the README and --help."""
    return [(s.name, s.task, s.layout) for s in SPECS.values()]


def dataset_help(task_cls) -> str:
    """The ``--dataset`` help of a task: its built-in sets and the benchmarks of :data:`SPECS` it reads."""
    builtin = ", ".join(task_cls.builtin_datasets) or "none"
    official = ", ".join(name for name, task, _ in describe() if task == task_cls.name) or "none"
    return (
        f"a built-in dataset ({builtin}), or a benchmark in its official layout read from --data_dir "
        f"({official}; see the README)"
    )
