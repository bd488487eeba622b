"""Datasets by name: the built-in ones (offline, fixed splits) and public benchmarks in their official layouts.

``--dataset NAME`` without ``--data_dir`` is a built-in set of the task (``Task.builtin_datasets``). With
``--data_dir DIR`` it names a benchmark whose files, as distributed (the layouts PaddleNLP's dataset builders
read), sit in ``DIR`` (or in the sub-directory the archive unpacks to, e.g. ``DIR/afqmc_public/``);
``--train_file/--dev_file/--test_file`` replace single files and are read in the same layout. A missing file is a
one-line error naming the file and the expected layout. Label ids follow PaddleNLP's label lists; the default
hyper-parameters are those of PaddleNLP's ernie-1.0 ``finetune/config.yml`` (its ``DefaultArgs`` plus the
dataset's entries), and every flag given on the command line wins over them.

``peoples_daily_ner`` is both: without ``--data_dir`` the built-in set (derived from the 1998-01 corpus), with
``--data_dir`` PaddleNLP's ``peoples_daily_ner`` files.

Files as distributed carry noise: a row that cannot be used is skipped and counted, one warning naming the first
(:class:`~ernie.finetune.data.RowSkips`); only a file with no usable row is refused. The training split then keeps
what can become a training feature (``Task.training_examples``: for QA, questions with a text and an answer found
in the context), while dev and test keep every row that can be predicted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ernie.utils import UserError

from . import data as D

# PaddleNLP ernie-1.0 finetune/config.yml: DefaultArgs (the keys this toolkit has) ...
PADDLENLP_DEFAULTS = {"learning_rate": 5e-5, "num_train_epochs": 3.0, "batch_size": 64, "max_seq_length": 128,
                      "weight_decay": 0.01, "logging_steps": 10, "eval_steps": 200, "warmup_ratio": 0.1}


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


# ------------------------------------------------------------------------------------------------- readers
def _clue_reader(convert: Callable[[dict], tuple[str, str | None, object]], skip_label: str | None = None):
    """A CLUE json-lines reader: ``convert(record) -> (text, text_pair, label)``; rows labelled ``skip_label``
    (``-``: no annotator majority) are dropped, as PaddleNLP does; rows that cannot be used are skipped and
    counted (:class:`~ernie.finetune.data.RowSkips`)."""

    def read(path: str, split: str) -> list[dict]:
        out, skips = [], D.RowSkips(path)
        for lineno, rec in D.read_rows(path, force_json=True):
            where = f"{path}:{lineno}"
            try:
                text, pair, label = convert(rec)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                skips.skip(where, f"not in the expected layout ({type(e).__name__}: {e})")
                continue
            if skip_label is not None and label == skip_label:
                continue
            if not isinstance(text, str) or not text.strip():
                skips.skip(where, "empty or missing text")
                continue
            out.append({"text": text, "text_pair": pair or None,
                        "label": None if label in (None, "") else str(label), "source": where})
        return skips.finish(out)

    return read


def _sentence(rec):
    return rec["sentence"], None, rec.get("label")


def _pair(rec):
    return rec["sentence1"], rec["sentence2"], rec.get("label")


def _csl(rec):
    return "，".join(rec["keyword"]), rec["abst"], rec.get("label")


def _wsc(rec):
    """CLUEWSC2020: mark the entity with ``_..._`` and the pronoun with ``[...]`` (PaddleNLP's convert_clue)."""
    text, t = rec["text"], rec["target"]
    marks = sorted([(t["span1_index"], t["span1_text"], "_", "_", "span1_text"),
                    (t["span2_index"], t["span2_text"], "[", "]", "span2_text")], reverse=True)
    for start, span, left, right, key in marks:  # from the right, so earlier offsets stay valid
        length = len(span)
        if text[start:start + length] != span:
            raise ValueError(f"{key} {span!r} is not at index {start} of the text")
        text = text[:start] + left + text[start:start + length] + right + text[start + length:]
    return text, None, rec.get("label")


def _tsv_reader(columns: dict[str, tuple[str, ...]] | tuple[str, ...], header: bool | dict[str, tuple[str, ...]],
                rename: dict | None = None, labels: tuple[str, ...] = ()):
    """A tsv reader with named columns (``text``, ``text_pair``, ``label``, others ignored); ``columns`` may
    differ per split (a dict keyed by train / dev / test).

    ``header``: False (none), the header's field names per split (line 1 must be exactly that line), or True
    (line 1 must not be a data row: its label field is not one of ``labels``). A file whose line 1 is not the
    promised header is said so on stderr, and its line 1 is read as data, not dropped. Rows that cannot be used
    are skipped and counted (:class:`~ernie.finetune.data.RowSkips`)."""

    def read(path: str, split: str) -> list[dict]:
        cols = columns[split] if isinstance(columns, dict) else columns
        expected = header.get(split) if isinstance(header, dict) else None
        out, skips = [], D.RowSkips(path)
        for lineno, rec in D.read_rows(path, force_tsv=True):
            row = dict(zip(cols, rec))
            if header and lineno == 1:
                if expected is not None and tuple(f.strip() for f in rec) == expected:
                    continue
                if expected is None and (row.get("label") or "").strip() not in labels:
                    continue
                promised = "'" + "\\t".join(expected) + "'" if expected else "(field names)"
                D.warn(f"{path}:1: not the header line {promised} the layout promises; line 1 is read as data")
            if len(rec) not in (len(cols), len(cols) - ("label" in cols)) or not row.get("text", "").strip():
                skips.skip(f"{path}:{lineno}", f"expected {len(cols)} tab-separated fields ({', '.join(cols)}) "
                                               f"with a text, got {len(rec)}")
                continue
            label = row.get("label") or None
            if rename and label in rename:
                label = rename[label]
            out.append({"text": row["text"], "text_pair": row.get("text_pair") or None, "label": label,
                        "source": f"{path}:{lineno}"})
        return skips.finish(out)

    return read


def _ner(path: str, split: str) -> list[dict]:
    return D.read_ner_file(path)


def _squad(path: str, split: str) -> list[dict]:
    from .qa import read_squad_file

    return read_squad_file(path)


def _clue(name: str, convert, labels, epochs: float, skip_label=None, extra=None, trainfile="train.json"):
    sub = f"{name}_public"
    layout = {"_sentence": "CLUE json lines {\"sentence\", \"label\"}",
              "_pair": "CLUE json lines {\"sentence1\", \"sentence2\", \"label\"}",
              "_csl": "CLUE json lines {\"abst\", \"keyword\": [...], \"label\"}",
              "_wsc": "CLUE json lines {\"text\", \"target\": {\"span1_index\", \"span1_text\", \"span2_index\", "
                      "\"span2_text\"}, \"label\"}"}[convert.__name__]
    files = {split: (fname, f"{sub}/{fname}") for split, fname in
             (("train", trainfile), ("dev", "dev.json"), ("test", "test.json"))}
    return DatasetSpec(name, "seq_cls", files, layout, _clue_reader(convert, skip_label), tuple(labels),
                       {"num_train_epochs": epochs, **(extra or {})})


NER_LABELS = ("B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O")
_NER_LAYOUT = "PaddleNLP tsv with a 'text_a<TAB>label' header, characters and tags each joined by \\002"
_QA_LAYOUT = "SQuAD-style JSON {\"data\": [{\"paragraphs\": [{\"context\", \"qas\": [{\"id\", \"question\", " \
             "\"answers\": [{\"text\", \"answer_start\"}]}]}]}]}"

SPECS: dict[str, DatasetSpec] = {s.name: s for s in [
    _clue("afqmc", _pair, ["0", "1"], 4),
    _clue("tnews", _sentence, [str(i) for i in range(100, 117) if i != 111], 4),
    _clue("iflytek", _sentence, [str(i) for i in range(119)], 8),
    _clue("ocnli", _pair, ["entailment", "contradiction", "neutral"], 8, skip_label="-", trainfile="train.50k.json"),
    _clue("cmnli", _pair, ["contradiction", "entailment", "neutral"], 3, skip_label="-"),
    _clue("cluewsc2020", _wsc, ["true", "false"], 50),
    _clue("csl", _csl, ["0", "1"], 10, extra={"max_seq_length": 256, "batch_size": 32}),
    DatasetSpec("chnsenticorp", "seq_cls",
                {s: (f"{s}.tsv", f"ChnSentiCorp/{s}.tsv", f"ChnSentiCorp/ChnSentiCorp/{s}.tsv")
                 for s in ("train", "dev", "test")},
                "tsv with a header: train 'label<TAB>text_a', dev 'qid<TAB>label<TAB>text_a', test 'qid<TAB>text_a'",
                _tsv_reader({"train": ("label", "text"), "dev": ("qid", "label", "text"), "test": ("qid", "text")},
                            header={"train": ("label", "text_a"), "dev": ("qid", "label", "text_a"),
                                    "test": ("qid", "text_a")}), ("0", "1")),
    DatasetSpec("chnsenticorp_v2", "seq_cls",
                {s: (f"{s}/part.0", f"chnsenticorp/{s}/part.0") for s in ("train", "dev", "test")},
                "tsv 'text<TAB>label' with a header line, files train/part.0, dev/part.0, test/part.0",
                _tsv_reader(("text", "label"), header=True, labels=("0", "1")), ("0", "1"),
                {"learning_rate": 5e-5, "batch_size": 16, "num_train_epochs": 8}),
    DatasetSpec("xnli_cn", "seq_cls",
                {s: (f"{s}/part-0", f"xnli_cn/{s}/part-0") for s in ("train", "dev", "test")},
                "tsv 'text_a<TAB>text_b<TAB>label' with a header line, files train/part-0, dev/part-0, test/part-0",
                _tsv_reader(("text", "text_pair", "label"), header=True, rename={"contradiction": "contradictory"},
                            labels=("contradiction", "contradictory", "entailment", "neutral")),
                ("contradictory", "entailment", "neutral"),
                {"learning_rate": 1e-4, "num_train_epochs": 3, "batch_size": 256}),
    DatasetSpec("lcqmc", "seq_cls", {s: (f"{s}.tsv", f"lcqmc/{s}.tsv") for s in ("train", "dev", "test")},
                "tsv 'query<TAB>title<TAB>label' without a header (test may lack the label)",
                _tsv_reader(("text", "text_pair", "label"), header=False), ("0", "1")),
    DatasetSpec("msra_ner", "ner", {"train": ("train.tsv", "msra_ner/train.tsv"),
                                    "test": ("test.tsv", "msra_ner/test.tsv")},
                _NER_LAYOUT + "; files train.tsv, test.tsv", _ner, NER_LABELS, {"num_train_epochs": 3}),
    DatasetSpec("peoples_daily_ner", "ner", {s: (f"{s}.tsv", f"peoples_daily_ner/{s}.tsv")
                                             for s in ("train", "dev", "test")},
                _NER_LAYOUT + "; files train.tsv, dev.tsv, test.tsv", _ner, NER_LABELS,
                {"learning_rate": 5e-5, "num_train_epochs": 4, "batch_size": 128}),
    DatasetSpec("cmrc2018", "qa", {"train": ("cmrc2018_train.json", "train.json"),
                                   "dev": ("cmrc2018_dev.json", "dev.json"),
                                   "test": ("cmrc2018_trial.json", "test.json")},
                _QA_LAYOUT + "; files cmrc2018_train.json, cmrc2018_dev.json (cmrc2018_trial.json as test)", _squad,
                (), {"learning_rate": 5e-5, "num_train_epochs": 1, "batch_size": 32, "max_seq_length": 384}),
    DatasetSpec("dureader_robust", "qa", {s: (f"{s}.json", f"dureader_robust-data/{s}.json")
                                          for s in ("train", "dev", "test")},
                _QA_LAYOUT + "; files train.json, dev.json, test.json", _squad, (),
                {"num_train_epochs": 1, "batch_size": 12, "max_seq_length": 384}),
]}


# --------------------------------------------------------------------------------------------------- lookup
def dataset_defaults(name: str | None, task_cls) -> dict:
    """The default flag values of benchmark ``name`` (empty for built-in or unknown names)."""
    spec = SPECS.get(name or "")
    if spec is None or spec.task != task_cls.name or name in task_cls.builtin_datasets:
        return {}
    return {**PADDLENLP_DEFAULTS, **spec.defaults}


def _spec_for(name: str, task_cls) -> DatasetSpec:
    spec = SPECS.get(name)
    builtin = ", ".join(task_cls.builtin_datasets) or "none"
    official = ", ".join(n for n, s in SPECS.items() if s.task == task_cls.name)
    if spec is None:
        raise UserError(f"--dataset {name}: unknown dataset for {task_cls.name}; built-in: {builtin}; in their "
                        f"official layout (with --data_dir): {official}")
    if spec.task != task_cls.name:
        raise UserError(f"--dataset {name}: a {spec.task} dataset, not {task_cls.name}")
    return spec


def find_file(spec: DatasetSpec, data_dir: str, split: str) -> str | None:
    for rel in spec.files.get(split, ()):
        path = os.path.join(data_dir, rel)
        if os.path.isfile(path):
            return path
    return None


def load_dataset(task_cls, name: str | None, data_dir: str | None, train_file: str | None, dev_file: str | None,
                 test_file: str | None, needed: tuple[str, ...] = ()) -> D.DatasetSplits:
    """The splits of ``--dataset``/``--data_dir`` and/or the given files (see the module docstring). A split in
    ``needed`` whose file is missing is an error naming the file and the expected layout."""
    given = {"train": train_file, "dev": dev_file, "test": test_file}
    if name and not data_dir and name in task_cls.builtin_datasets:
        if any(given.values()):
            raise UserError(f"--dataset {name}: a built-in dataset; give either it or --train_file/--dev_file/"
                            f"--test_file (or --data_dir for the benchmark's own files)")
        return task_cls.builtin_datasets[name]()
    spec = _spec_for(name, task_cls) if name else None
    if spec is not None and not data_dir and not any(given.values()):
        raise UserError(f"--dataset {name}: the toolkit runs offline; download it and pass --data_dir DIR holding "
                        f"{', '.join(v[0] for v in spec.files.values())} ({spec.layout})")
    if data_dir and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir}: no such directory")
    read = spec.read if spec is not None else (lambda path, split: task_cls.read_file(path))
    layout = spec.layout if spec is not None else task_cls.file_format
    paths = {}
    for split in ("train", "dev", "test"):
        path = given[split] or (find_file(spec, data_dir, split) if spec is not None and data_dir else None)
        if given[split] and not os.path.isfile(given[split]):
            raise UserError(f"--{split}_file {given[split]}: no such file (expected {layout})")
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
    return D.DatasetSplits(splits["train"], splits["dev"], splits["test"], labels)


def describe() -> list[tuple[str, str, str]]:
    """(name, task, expected files and layout) of every benchmark, for the README and --help."""
    return [(s.name, s.task, s.layout) for s in SPECS.values()]
