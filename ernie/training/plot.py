"""Loss and learning-rate curves of a run (``output_dir/train_log.jsonl``) drawn to a PNG."""

from __future__ import annotations

import json
import os
from typing import Any

from ernie.utils import ArgumentParser, UserError, atomic_write, check_output_path, cli_main

from .log import LOG_FILE


def read_log(path: str) -> list[dict]:
    """Records of a jsonl log (``path`` is the file or the run's output_dir)."""
    if os.path.isdir(path):
        path = os.path.join(path, LOG_FILE)
    if not os.path.isfile(path):
        raise UserError(f"--log: {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                records.append(json.loads(line))
            except ValueError:
                raise UserError(f"{path}:{lineno}: not a JSON record") from None
    return records


def plot(records: list[dict], output: str) -> None:
    """Train/valid/test loss (left) and learning rate (right) against the global step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles: dict[str, dict[str, Any]] = {
        "train": dict(lw=1),
        "valid": dict(marker="o", lw=1.5),
        "test": dict(marker="*", ms=12, ls=""),
    }
    for event, style in styles.items():
        rows = [r for r in records if r.get("event") == event]
        if rows:
            ax_loss.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f"{event} loss", **style)
    train = [r for r in records if r.get("event") == "train"]
    if train:
        ax_loss.plot(
            [r["step"] for r in train], [r["lm_loss"] for r in train], lw=0.8, alpha=0.6, label="train lm_loss"
        )
        ax_lr.plot([r["step"] for r in train], [r["learning_rate"] for r in train], color="tab:green")
    basic = [r for r in records if r.get("event") == "valid" and "basic_lm_loss" in r]
    if basic and any(r.get("masking_stage") != "basic" for r in basic):  # else it is the valid lm_loss itself
        ax_loss.plot(
            [r["step"] for r in basic],
            [r["basic_lm_loss"] for r in basic],
            marker="s",
            lw=1,
            label="valid lm_loss, basic-masked (comparable)",
        )
    ax_loss.set(xlabel="global step", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_lr.set(xlabel="global step", ylabel="learning rate", title="learning rate")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(output, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        allow_abbrev=False, description="Plot loss / learning-rate curves of a pretraining run to a PNG."
    )
    parser.add_argument("--log", required=True, help="run output_dir or its train_log.jsonl")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    check_output_path(args.output, args.overwrite)
    records = read_log(args.log)
    if not any(r.get("event") == "train" for r in records):
        raise UserError(f"--log: {args.log} has no training records yet")
    plot(records, args.output)
    print(f"wrote {args.output}")
