"""The precision FastDeploy's OpenVINO backend computes in on the CPU, and the setting that makes it f32.

OpenVINO's CPU plugin (2023.0 in ``fastdeploy-python==1.0.7``) computes in bf16 by default on CPUs with bf16
instructions (``avx512_bf16`` or ``amx_bf16``: recent AMD EPYC, Intel Cooper Lake / Sapphire Rapids and later);
measured on an AMD EPYC with avx512_bf16: logits 2e-3..4e-2 off the f32 reference. FastDeploy 1.0.7's
``openvino_option`` has no precision setting, but its ``ov::Core`` reads the ``plugins.xml`` next to
``libopenvino.so`` and applies each plugin's ``<properties>`` when it loads the plugin, so the toolkit's FastDeploy
environment gets ``INFERENCE_PRECISION_HINT=f32`` for the CPU plugin there (:func:`set_cpu_f32`, called by
``ernie.deploy.envs``; harmless on CPUs without bf16, where f32 is already the default). Measured with the hint:
the same logits as ONNX Runtime within 2e-6.

Contract (no Paddle, no FastDeploy import here; runs in either environment; the CPU's bf16 instructions are
detected by ``ernie.utils.machine.cpu_has_bf16``, from its flags, never from the vendor):
- :func:`plugins_xml` ``(fastdeploy_dir) -> path`` of the OpenVINO plugin list inside a fastdeploy package;
- :func:`set_cpu_f32` ``(path) -> bool`` adds the hint (idempotent, atomic rewrite; True when it changed the file);
- :func:`cpu_precision` ``(path, flags=None) -> "f32" | "bf16"``: what the CPU plugin computes in with that file.
"""

from __future__ import annotations

import os
import re

from ernie.utils import atomic_write
from ernie.utils.machine import BF16_FLAGS, cpu_flags, cpu_has_bf16  # noqa: F401 - re-exported for the scripts

HINT_KEY = "INFERENCE_PRECISION_HINT"
PLUGINS_XML = os.path.join("libs", "third_libs", "openvino", "runtime", "lib", "plugins.xml")
_CPU_PLUGIN = re.compile(r'(<plugin\s+name="CPU"[^>]*>)(.*?)(</plugin>)', re.S)


def plugins_xml(fastdeploy_dir: str) -> str:
    return os.path.join(fastdeploy_dir, PLUGINS_XML)


def _cpu_hint(text: str) -> str | None:
    m = _CPU_PLUGIN.search(text)
    hint = m and re.search(rf'<property\s+key="{HINT_KEY}"\s+value="([^"]*)"', m.group(2))
    return hint.group(1) if hint else None


def set_cpu_f32(path: str) -> bool:
    """Give the CPU plugin of OpenVINO's ``plugins.xml`` at ``path`` the property ``INFERENCE_PRECISION_HINT=f32``.

    Idempotent; rewrites the file atomically only when the hint is missing or different. Raises ``ValueError`` when
    the file has no CPU plugin entry (not the OpenVINO this was written for)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if _cpu_hint(text) == "f32":
        return False
    m = _CPU_PLUGIN.search(text)
    if m is None:
        raise ValueError(f"{path}: no CPU plugin entry")
    body = re.sub(rf'\s*<property\s+key="{HINT_KEY}"[^>]*/>', "", m.group(2))
    prop = f'<property key="{HINT_KEY}" value="f32"/>'
    if "<properties>" in body:
        body = body.replace("<properties>", f"<properties>\n                {prop}", 1)
    else:
        body = f"\n            <properties>\n                {prop}\n            </properties>{body.rstrip()}\n        "
    with atomic_write(path, "w") as f:
        f.write(text[: m.start(2)] + body + text[m.end(2) :])
    return True


def cpu_precision(path: str, flags: set[str] | None = None) -> str:
    """``"f32"`` or ``"bf16"``: what OpenVINO's CPU plugin computes in with the ``plugins.xml`` at ``path`` on this
    CPU (or on a CPU with ``flags``)."""
    if flags is None:
        flags = cpu_flags()
    try:
        with open(path, encoding="utf-8") as f:
            hint = _cpu_hint(f.read())
    except OSError:
        hint = None
    if hint:
        return "bf16" if hint.lower() == "bf16" and cpu_has_bf16(flags) else "f32"
    return "bf16" if cpu_has_bf16(flags) else "f32"
