"""Named-entity recognition (character BIO tagging): :class:`NerTask` (run by scripts/run_ner.py,
:func:`ernie.finetune_cli.run_ner`).

    python scripts/run_ner.py --dataset peoples_daily_ner --model_name_or_path output/model_last \
        --output_dir output/ner --do_train --do_eval --do_predict

One token per character (its first WordPiece, [UNK] for a character that tokenizes to nothing); logits
[batch, seq, num_labels]; entity-level precision / recall / F1 over all characters (those cut by
``max_seq_length`` count as ``O``); predictions ``text, tags, entities`` (tsv).
"""

from __future__ import annotations

import os

import numpy as np

from data_tools.corpus import peoples_daily_ner_dataset

from .metrics import bio_entities, entity_prf
from .readers import read_ner_file
from .tasks import IGNORE_INDEX, Task, pad_stack, write_tsv


class NerTask(Task):
    name = "ner"
    description = "Fine-tune ERNIE for character-level named-entity recognition (BIO)."
    model_class = "ErnieForTokenClassification"
    default_metric = "f1"
    metric_names = ("f1", "precision", "recall", "loss")
    builtin_datasets = {"peoples_daily_ner": peoples_daily_ner_dataset}
    file_format = (
        "tsv 'chars<TAB>tags' with \\002 between characters and between tags (msra_ner layout) or jsonl "
        '{"tokens": [...], "labels": [...]}'
    )

    read_file = staticmethod(read_ner_file)

    def __init__(self, tokenizer, labels: list[str], max_seq_length: int, options=None):
        super().__init__(tokenizer, labels, max_seq_length, options)
        self._char_ids: dict[str, int] = {}

    @classmethod
    def example_labels(cls, example: dict) -> list[str] | None:
        return example["labels"]

    @classmethod
    def labels_from_examples(cls, examples: list[dict]) -> list[str]:
        """``O`` first, then by entity type with B before I."""
        found = {t for ex in examples if ex["labels"] for t in ex["labels"]}
        found.add("O")
        return sorted(found, key=lambda t: (t != "O", t[2:], t[:2]))

    def char_id(self, ch: str) -> int:
        """The id of one character: its first WordPiece, or [UNK] when it tokenizes to nothing (e.g. a space)."""
        cid = self._char_ids.get(ch)
        if cid is None:
            pieces = self.tokenizer.tokenize(ch)
            cid = self.tokenizer.convert_tokens_to_ids(pieces[0]) if pieces else self.tokenizer.unk_token_id
            self._char_ids[ch] = cid
        return cid

    def encode(self, examples: list[dict]) -> list[dict]:
        """``[CLS] chars[:max_seq_length - 2] [SEP]``; labels ``IGNORE_INDEX`` on the special tokens."""
        out, keep = [], self.max_seq_length - 2
        tok = self.tokenizer
        for ex in examples:
            ids = [tok.cls_token_id, *(self.char_id(c) for c in ex["tokens"][:keep]), tok.sep_token_id]
            feature = {
                "input_ids": np.asarray(ids, dtype=np.int64),
                "token_type_ids": np.zeros(len(ids), dtype=np.int64),
            }
            if ex["labels"] is not None:
                tags = [self.label2id[t] for t in ex["labels"]]
                feature["labels"] = np.asarray([IGNORE_INDEX, *tags[:keep], IGNORE_INDEX], dtype=np.int64)
                feature["gold"] = np.asarray(tags, dtype=np.int64)  # all characters, for scoring
            out.append(feature)
        return out

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]:
        batch = super().collate(features)
        batch["lengths"] = np.asarray([len(f["input_ids"]) - 2 for f in features], dtype=np.int64)
        if all("labels" in f for f in features):
            batch["labels"] = pad_stack([f["labels"] for f in features], IGNORE_INDEX)
        return batch

    def outputs(self, raw, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Predicted tag ids per example, for its characters only (no [CLS]/[SEP]/padding)."""
        tags = raw.numpy().argmax(-1)
        return [tags[i, 1 : 1 + n] for i, n in enumerate(batch["lengths"])]

    def tags(self, output: np.ndarray, n_chars: int) -> list[str]:
        """Tag names for all ``n_chars`` characters (those cut by ``max_seq_length`` are ``O``)."""
        return [self.labels[int(t)] for t in output] + ["O"] * (n_chars - len(output))

    def metrics(self, outputs: list[np.ndarray], features: list[dict]) -> dict[str, float]:
        """Entity P/R/F1 against the gold tags of all characters (those cut by ``max_seq_length`` included)."""
        gold = [[self.labels[t] for t in f["gold"]] for f in features]
        pred = [self.tags(o, len(g)) for o, g in zip(outputs, gold)]
        return entity_prf(gold, pred)

    def write_predictions(
        self, output_dir: str, examples: list[dict], features: list[dict], outputs: list, split: str = "test"
    ) -> str:
        rows = []
        for ex, o in zip(examples, outputs):
            tags = self.tags(o, len(ex["tokens"]))
            ents = sorted(bio_entities(tags), key=lambda e: e[1])
            rows.append(
                [
                    "".join(ex["tokens"]),
                    " ".join(tags),
                    " ".join(f"{''.join(ex['tokens'][s:e])}/{k}" for k, s, e in ents),
                ]
            )
        path = os.path.join(output_dir, f"{split}_predictions.tsv")
        write_tsv(path, ["text", "tags", "entities"], rows)
        return path
