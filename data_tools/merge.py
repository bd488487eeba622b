"""Concatenate several token corpora (outputs of create_pretraining_data, either format) into one.

    python scripts/merge.py --input out/part_a out/part_b --output_prefix out/all [--data_impl mmap]
    python scripts/merge.py --input out/ --output_prefix merged/all      # every corpus in the folder, sorted

Documents keep their order (inputs in the order given); the output dtype is the widest of the inputs, its format
that of the first input unless ``--data_impl`` says otherwise. Unit markers (``{P}_units.npy``) are kept when every
input has them; otherwise the output has none (the summary line says which). Corpora that record different
vocabularies (``{P}_meta.json``) are refused; the output records their common one. Written atomically; existing outputs
are refused unless ``--overwrite``.
"""

from __future__ import annotations

import os
import sys

from ernie.utils import ArgumentParser, UserError, cli_main

from .indexed_dataset import IMPLS, detect_impl, merge
from .pool import sigterm_as_interrupt

_SUFFIXES = ("_ids.npy", "_idx.npz", ".bin", ".idx")


def find_prefixes(inputs: list[str]) -> list[str]:
    """Corpus prefixes named by ``inputs``: a prefix itself, or a folder (every complete corpus in it, sorted)."""
    prefixes = []
    for item in inputs:
        if detect_impl(item) is not None:
            prefixes.append(item)
        elif os.path.isdir(item):
            found = sorted(
                {
                    os.path.join(item, name[: -len(s)])
                    for name in os.listdir(item)
                    for s in _SUFFIXES
                    if name.endswith(s) and not name.startswith(".")
                }
            )
            found = [p for p in found if detect_impl(p) is not None]
            if not found:
                raise UserError(f"--input: no corpus (X_ids.npy + X_idx.npz or X.bin + X.idx) in folder {item}")
            prefixes += found
        else:
            raise UserError(
                f"--input: {item}: no such corpus prefix or folder (expected {item}_ids.npy + "
                f"{item}_idx.npz or {item}.bin + {item}.idx)"
            )
    return prefixes


def build_parser() -> ArgumentParser:
    p = ArgumentParser(allow_abbrev=False, description="Merge token corpora into one.")
    p.add_argument("--input", nargs="+", required=True, help="corpus prefixes and/or folders of corpora")
    p.add_argument("--output_prefix", "--output-prefix", dest="output_prefix", required=True)
    p.add_argument("--data_impl", choices=IMPLS, default=None, help="output format (default: the first input's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prefixes = find_prefixes(args.input)
    out = os.path.abspath(args.output_prefix)
    if out in map(os.path.abspath, prefixes):
        raise UserError(f"--output_prefix: {args.output_prefix} is also an input")
    with sigterm_as_interrupt():  # a terminated run removes its temporary files
        builder = merge(prefixes, args.output_prefix, impl=args.data_impl, overwrite=args.overwrite)
    markers = "with unit markers" if builder.has_units else "without unit markers"
    if builder.vocab_fingerprint is None:
        print(
            "warning: some inputs record no vocabulary (built by an older version or by PaddleNLP): the merged "
            "corpus records none, and whether all inputs share one vocabulary was not checked",
            file=sys.stderr,
        )
    print(f"Merged {len(prefixes)} corpora into {args.output_prefix} ({builder.impl}, {markers}): {builder.summary()}")
    return 0
