"""Data preparation and datasets for ERNIE pretraining: vocab, segmentation, token files, sample indices."""
