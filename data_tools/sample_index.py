"""Sample-index builders: the C++ extension ``data_tools.helpers`` (csrc/helpers.cpp), re-exported.

Drop-in for PaddleNLP's ``tool_helpers.helpers`` 0.1.2 (bit-identical outputs, same argument order):

- ``build_mapping(docs, sizes, num_epochs, max_num_samples, max_seq_length, short_seq_prob, seed, verbose,
  min_num_sent) -> uint32 [N, 3]``: ERNIE/BERT samples (start sentence, end sentence, target length), shuffled.
- ``build_blocks_mapping(docs, sizes, titles_sizes, num_epochs, max_num_samples, max_seq_length, seed, verbose,
  use_one_sent_blocks) -> uint32 [N, 4]``: (start sentence, end sentence, document, block id), shuffled.
- ``build_sample_idx(sizes, doc_idx, seq_length, num_epochs, tokens_per_epoch) -> int32 [N + 1, 2]``: GPT samples.
- ``build_blending_indices(dataset_index, dataset_sample_index, weights, num_datasets, size, verbose)``: fills
  ``dataset_index`` (uint8 or int16) and ``dataset_sample_index`` (int64) in place.

``docs`` is int64 [D + 1] sentence offsets of documents, ``sizes`` int32 tokens per sentence; the mapping arrays
are uint64 instead of uint32 when there are more than 2**32 sentences. Invalid inputs raise ValueError/TypeError.
"""

from ernie.utils import UserError

_FUNCTIONS = ("build_mapping", "build_blocks_mapping", "build_sample_idx", "build_blending_indices")

try:
    from data_tools import helpers as _helpers
except ImportError as e:
    raise UserError(
        f"the compiled sample-index helpers (data_tools.helpers) cannot be imported ({e}): "
        "reinstall with `pip install -e .` from the repository root"
    ) from e

_missing = [name for name in _FUNCTIONS if not hasattr(_helpers, name)]
if _missing:
    raise UserError(
        f"data_tools.helpers ({getattr(_helpers, '__file__', 'no file')}) is stale (no {', '.join(_missing)}): "
        "reinstall with `pip install -e .` from the repository root"
    )

build_mapping = _helpers.build_mapping
build_blocks_mapping = _helpers.build_blocks_mapping
build_sample_idx = _helpers.build_sample_idx
build_blending_indices = _helpers.build_blending_indices


def mapping_problem(
    mapping, first_sentence: int, end_sentence: int, max_target: int, chunk: int = 1 << 22
) -> str | None:
    """What is wrong with a ``build_mapping`` result over sentences ``[first_sentence, end_sentence)``: a row
    whose span leaves that range or is empty, or whose target length is not in ``1..max_target``; ``None`` when
    every row is sound. Vectorised, ``chunk`` rows at a time (a cached mapping can hold billions of rows)."""
    import numpy as np

    for lo in range(0, len(mapping), chunk):
        rows = np.asarray(mapping[lo : lo + chunk], dtype=np.int64)
        start, end, target = rows[:, 0], rows[:, 1], rows[:, 2]
        bad = (start < first_sentence) | (end > end_sentence) | (start >= end) | (target < 1) | (target > max_target)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return (
                f"row {lo + i} is {rows[i].tolist()}, expected sentences within [{first_sentence}, "
                f"{end_sentence}) and a target length of 1..{max_target}"
            )
    return None


__all__ = list(_FUNCTIONS) + ["mapping_problem"]
