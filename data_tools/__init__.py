"""Data preparation and datasets for ERNIE pretraining: vocab, segmentation, token files, sample indices."""

import warnings as _warnings

# Paddle warns on every import that ccache (for building custom C++ ops) is missing; nothing here builds ops.
_warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
