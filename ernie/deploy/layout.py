"""File names of an exported model directory (see ernie/deploy/export.py), importable without Paddle: the FastDeploy
environment (ernie/deploy/fastdeploy_infer.py) has no Paddle."""

from __future__ import annotations

import os

MODEL_PREFIX = "model"
PROGRAM_SUFFIXES = (".json", ".pdmodel")  # PIR program, legacy ProgramDesc
PARAMS_SUFFIX = ".pdiparams"
DEPLOY_CONFIG = "deploy_config.json"
INPUT_NAMES = ("input_ids", "token_type_ids")
ONNX_FILE = MODEL_PREFIX + ".onnx"  # paddle2onnx conversion (fp32), cached by the ONNX Runtime predictor
INT8_ONNX_FILE = MODEL_PREFIX + ".int8.onnx"  # export_model.py --quantize int8 (ernie/deploy/quantize.py)
PRECISIONS = ("fp32", "int8")  # deploy_config.json "precisions"; the predictors' --precision


def program_file(directory: str, prefix: str = MODEL_PREFIX) -> str | None:
    """The program file of an exported model (``.json`` preferred over ``.pdmodel``), or None."""
    for suffix in PROGRAM_SUFFIXES:
        path = os.path.join(directory, prefix + suffix)
        if os.path.isfile(path):
            return path
    return None
