"""The legacy ``model.pdmodel`` (ProgramDesc) of an exported model, traced by Paddle 2.6 in an isolated environment.

Why: FastDeploy 1.0.7 (its last release) bundles Paddle Inference 2.x, which reads only the legacy ProgramDesc, and
converts that same program for its ONNX Runtime and OpenVINO backends. Paddle 3.3.1 writes the PIR ``model.json``
and cannot build a legacy program of anything with a matmul: ``paddle.matmul`` rejects legacy Variables under
``paddle.pir_utils.OldIrGuard()``, under ``FLAGS_enable_pir_api=0`` and under ``paddle.enable_static()`` alike
(checked in tests/test_fastdeploy.py). Writing the ProgramDesc by hand would mean re-implementing, op by op, the
protobuf attribute sets that Paddle 2.x's kernels and FastDeploy's converters expect, and redoing it for every model
change; tracing the same ``ernie.modeling`` code with the last Paddle that has the legacy IR gives a program that is
right by construction, for every task class, at the cost of a one-time 126 MB environment (~1 min to create).

Contract of :func:`write_legacy_program` ``(model, directory)``, called by ``export_model`` after Paddle 3 wrote
``model.json`` + ``model.pdiparams`` into ``directory``:
- writes ``directory/model.pdmodel``, the legacy program of the same model with the same inputs and outputs. Its
  variables carry the Paddle 3 parameter names, so its weight file is byte for byte ``model.pdiparams`` (checked;
  a difference is an error, never a second weight file): ``model.pdmodel + model.pdiparams`` is the layout that
  FastDeploy's and PaddleNLP's deployment scripts load;
- the position ids and the attention mask are built inside the program from ops that FastDeploy's bundled
  paddle2onnx and OpenVINO's Paddle frontend know (see ``_explicit_inputs_class``), same values as the model's own;
- weights and config cross to the Paddle 2.6 process as ``config.json`` + ``weights.npz`` (exact float32 copies) +
  ``names.json`` in a temporary folder; the child (``python -m ernie.deploy.legacy_export``) rebuilds the same class
  from the same ``ernie.modeling`` source, loads them, and runs ``paddle.jit.save``;
- the environment is ``ernie.deploy.envs``'s ``paddle26`` (created on first use, then reused).
  ``ERNIE_NO_LEGACY_EXPORT=1`` skips this step (an export without ``model.pdmodel``).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from ernie.utils import UserError

from . import envs
from .layout import INPUT_NAMES

LEGACY_PROGRAM = "model.pdmodel"
_CHILD_PREFIX = "model"


def enabled() -> bool:
    return not os.environ.get("ERNIE_NO_LEGACY_EXPORT")


def write_if_enabled(model, directory: str, params_file: str) -> str | None:
    """The export hook: ``model.pdmodel``'s file name, or None when skipped (``ERNIE_NO_LEGACY_EXPORT``) or failed
    (one warning line on stderr; the Paddle 3 export stands)."""
    if not enabled():
        return None
    try:
        return os.path.basename(write_legacy_program(model, directory, params_file))
    except (UserError, OSError, RuntimeError) as e:
        msg = str(e).strip().splitlines()
        print(
            f"warning: {LEGACY_PROGRAM} (for FastDeploy) not written: {msg[0] if msg else type(e).__name__}"
            + (f" ... {msg[-1]}" if len(msg) > 1 else ""),
            file=sys.stderr,
            flush=True,
        )
        return None


def write_legacy_program(model, directory: str, params_file: str = "model.pdiparams", log=None) -> str:
    """Write ``directory/model.pdmodel`` for ``model`` (see the module docstring); returns its path."""
    import numpy as np

    cfg = model.config.replace()
    cfg.extra = {**cfg.extra, "architectures": [type(model).__name__]}
    state = model.state_dict()
    with tempfile.TemporaryDirectory(prefix="ernie-legacy-") as work:
        cfg.save_pretrained(work)
        np.savez(os.path.join(work, "weights.npz"), **{k: v.numpy() for k, v in state.items()})
        with open(os.path.join(work, "names.json"), "w", encoding="utf-8") as f:
            json.dump({k: v.name for k, v in state.items()}, f)
        out = os.path.join(work, "out")
        proc = envs.run_in_env(
            "paddle26",
            [
                "-m",
                "ernie.deploy.legacy_export",
                "--model_dir",
                work,
                "--output_prefix",
                os.path.join(out, _CHILD_PREFIX),
            ],
            log=log,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-20:])
            raise UserError(f"the Paddle 2.6 export of {LEGACY_PROGRAM} failed:\n{tail}")
        if not filecmp.cmp(
            os.path.join(out, _CHILD_PREFIX + ".pdiparams"), os.path.join(directory, params_file), shallow=False
        ):
            raise RuntimeError(
                f"the Paddle 2.6 program's weights differ from {params_file} (parameter names or "
                f"order changed): not writing {LEGACY_PROGRAM}"
            )
        prog = os.path.join(directory, LEGACY_PROGRAM)
        os.replace(os.path.join(out, _CHILD_PREFIX + ".pdmodel"), prog)
    return prog


def _paddle26_compat(paddle) -> None:
    """Paddle 3 arguments that ``ernie.modeling`` uses and Paddle 2.6 lacks, where they cannot change the program:
    ``TruncatedNormal(a=, b=)`` (the init bounds; every weight is overwritten from weights.npz)."""
    init = paddle.nn.initializer
    if "a" not in init.TruncatedNormal.__init__.__code__.co_varnames:
        base: Any = init.TruncatedNormal

        class TruncatedNormal(base):
            def __init__(self, mean=0.0, std=1.0, a=None, b=None, name=None):
                super().__init__(mean=mean, std=std, name=name)

        init.TruncatedNormal = TruncatedNormal


def _explicit_inputs_class(paddle, np):
    layer: Any = paddle.nn.Layer  # paddle is the module this child process imported (Paddle 2.6)

    class _ExplicitInputs(layer):
        """(input_ids, token_type_ids) -> logits, with the position ids and the additive attention mask built from
        ops every legacy converter knows (full_like, cumsum, equal, cast, scale) instead of the model's defaults
        (a slice of the position table up to a runtime length, a 0-D ``full`` + ``where``). The values are the
        same: positions 0..S-1, and a bias of 0 / float32 min on padding, exactly as ``attention_bias``."""

        def __init__(self, model):
            super().__init__()
            self.model = model
            self.pad_token_id = model.config.pad_token_id

        def forward(self, input_ids, token_type_ids):
            ones = paddle.ones_like(input_ids)
            position_ids = paddle.cumsum(ones, axis=-1) - ones
            pad = paddle.equal(input_ids, paddle.full_like(input_ids, self.pad_token_id))  # no 0-D constant
            pad = pad.astype("float32").unsqueeze([1, 2])
            mask = pad * float(np.finfo(np.float32).min)
            return self.model(input_ids, token_type_ids=token_type_ids, position_ids=position_ids, attention_mask=mask)

    return _ExplicitInputs


def _child(argv: list[str] | None = None) -> None:
    """In the Paddle 2.6 environment: config.json + weights.npz -> OUTPUT_PREFIX.pdmodel / .pdiparams."""
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m ernie.deploy.legacy_export")
    p.add_argument("--model_dir", required=True)
    p.add_argument("--output_prefix", required=True)
    a = p.parse_args(argv)

    # delays Paddle and the model to this child process (Paddle 2.6): importing this module stays Paddle-free
    import numpy as np
    import paddle

    from ernie import modeling
    from ernie.configuration import ErnieConfig, resolve_config_file

    _ExplicitInputs = _explicit_inputs_class(paddle, np)

    _paddle26_compat(paddle)
    config = ErnieConfig.from_file(resolve_config_file(a.model_dir))
    cls = getattr(modeling, (config.extra.get("architectures") or ["ErnieForSequenceClassification"])[0])
    model = cls(config)
    with np.load(os.path.join(a.model_dir, "weights.npz")) as z:
        report = model.load_weights({k: z[k] for k in z.files}, source="weights.npz")
    if report["missing"] or report["unexpected"]:
        sys.exit(f"weights do not fit {cls.__name__}: {report}")
    with open(os.path.join(a.model_dir, "names.json"), encoding="utf-8") as f:
        names = json.load(f)
    for key, param in model.state_dict().items():  # the parent's variable names: same order in the params file
        param.name = names[key]
    model.eval()
    spec = [paddle.static.InputSpec([None, None], "int64", name) for name in INPUT_NAMES]
    with paddle.no_grad():
        static = paddle.jit.to_static(_ExplicitInputs(model), input_spec=spec, full_graph=True)
        paddle.jit.save(static, a.output_prefix)
    print(json.dumps({"paddle": paddle.__version__, "class": cls.__name__}))


if __name__ == "__main__":
    _child()
