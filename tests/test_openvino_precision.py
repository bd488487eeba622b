"""FastDeploy's OpenVINO precision switch (ernie/deploy/openvino_precision.py) on both kinds of CPU, with the CPU
flags forced either way: without the toolkit's setting OpenVINO's CPU plugin is reported bf16 exactly on CPUs with
bf16 instructions; with it, f32 everywhere. Fast: no FastDeploy needed (tests/test_fastdeploy.py runs the real one).
"""

from __future__ import annotations

import json
import os

import pytest

from ernie.deploy import envs
from ernie.deploy import openvino_precision as O
from ernie.utils import UserError, machine

# plugins.xml as fastdeploy-python 1.0.7 ships it (OpenVINO 2023.0), abridged
SHIPPED = """<ie>
    <plugins>
        <plugin name="AUTO" location="libopenvino_auto_plugin.so">
        </plugin>
        <plugin name="CPU" location="libopenvino_intel_cpu_plugin.so">
        </plugin>
        <plugin name="HETERO" location="libopenvino_hetero_plugin.so">
        </plugin>
    </plugins>
</ie>
"""
BF16_CPU = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}  # e.g. AMD EPYC Zen 4, Intel Cooper Lake
AMX_CPU = {"avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"}  # Intel Sapphire Rapids and later
PLAIN_CPU = {"avx2", "fma", "avx512f", "avx512_vnni"}  # no bf16 instructions


@pytest.fixture
def shipped(tmp_path):
    path = tmp_path / "plugins.xml"
    path.write_text(SHIPPED, encoding="utf-8")
    return str(path)


def test_cpu_flags_and_machine_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: Whatever\nmodel name\t: Some CPU\n"
        "flags\t\t: fpu avx2 avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n",
        encoding="utf-8",
    )
    assert O.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16", "avx512_vnni"}
    assert O.cpu_flags(str(tmp_path / "missing")) == set()
    assert O.cpu_has_bf16(O.cpu_flags(str(info))) and not O.cpu_has_bf16(set())
    line = machine.describe_machine(str(info))
    assert line.startswith("Some CPU, ") and "bf16: avx512_bf16 (no AMX); VNNI: avx512_vnni" in line
    assert "bf16: none (no AMX); VNNI: none" in machine.describe_machine(str(tmp_path / "missing"))


@pytest.mark.parametrize("flags, default", [(BF16_CPU, "bf16"), (AMX_CPU, "bf16"), (PLAIN_CPU, "f32")])
def test_precision_is_detected_from_the_cpu_flags_and_the_setting_makes_it_f32(shipped, flags, default):
    assert O.cpu_precision(shipped, flags) == default  # what FastDeploy 1.0.7 does out of the box
    assert O.set_cpu_f32(shipped) is True
    assert O.cpu_precision(shipped, flags) == "f32"
    before = open(shipped, encoding="utf-8").read()
    assert O.set_cpu_f32(shipped) is False and open(shipped, encoding="utf-8").read() == before  # idempotent
    assert before.count('<property key="INFERENCE_PRECISION_HINT" value="f32"/>') == 1
    # only the CPU plugin's entry changed
    assert (
        before.replace(
            """
            <properties>
                <property key="INFERENCE_PRECISION_HINT" value="f32"/>
            </properties>""",
            "",
        )
        == SHIPPED
    )


def test_detection_follows_this_machine_when_not_forced(shipped, monkeypatch):
    monkeypatch.setattr(O, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": set(BF16_CPU))
    assert O.cpu_precision(shipped) == "bf16"
    monkeypatch.setattr(O, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": set(PLAIN_CPU))
    assert O.cpu_precision(shipped) == "f32"


def test_an_explicit_bf16_hint_or_other_properties_are_respected(tmp_path):
    path = tmp_path / "plugins.xml"
    path.write_text(
        SHIPPED.replace(
            'libopenvino_intel_cpu_plugin.so">\n',
            'libopenvino_intel_cpu_plugin.so">\n'
            "            <properties>\n"
            '                <property key="INFERENCE_PRECISION_HINT" value="bf16"/>\n'
            '                <property key="NUM_STREAMS" value="1"/>\n'
            "            </properties>\n",
        ),
        encoding="utf-8",
    )
    assert O.cpu_precision(str(path), BF16_CPU) == "bf16" and O.cpu_precision(str(path), PLAIN_CPU) == "f32"
    assert O.set_cpu_f32(str(path)) is True
    text = path.read_text(encoding="utf-8")
    assert 'value="bf16"' not in text and text.count("INFERENCE_PRECISION_HINT") == 1 and "NUM_STREAMS" in text
    assert O.cpu_precision(str(path), BF16_CPU) == "f32"


def test_the_fastdeploy_environment_is_configured_to_f32(tmp_path, shipped):
    env = tmp_path / "fastdeploy"
    lib = env / "lib" / "python3.10" / "site-packages" / "fastdeploy"
    os.makedirs(os.path.dirname(O.plugins_xml(str(lib))))
    with open(O.plugins_xml(str(lib)), "w", encoding="utf-8") as f:
        f.write(SHIPPED)
    assert envs.ENVS["fastdeploy"].configure is not None
    envs.ENVS["fastdeploy"].configure(str(env))
    assert O.cpu_precision(O.plugins_xml(str(lib)), BF16_CPU) == "f32"
    with pytest.raises(UserError, match="plugins.xml"):
        envs.ENVS["fastdeploy"].configure(str(tmp_path / "not-an-env"))


def test_the_precision_line_names_the_cpu_feature(monkeypatch):
    from ernie.deploy.fastdeploy_infer import openvino_precision_line

    assert openvino_precision_line("f32") == "FastDeploy openvino: OpenVINO's CPU plugin computes in f32"
    monkeypatch.setattr("ernie.deploy.fastdeploy_infer.cpu_flags", lambda: set(AMX_CPU))
    line = openvino_precision_line("bf16")
    assert "bf16 on this CPU (amx_bf16)" in line and "setup_fastdeploy_env.sh" in line


def test_an_existing_fastdeploy_environment_gets_f32_on_the_next_call(tmp_path, monkeypatch):
    """An environment made by an older toolkit (bf16 on bf16 CPUs) is set to f32 by ensure_env, without a rebuild."""
    monkeypatch.setenv("ERNIE_TOOLKIT_CACHE", str(tmp_path))
    env = tmp_path / "fastdeploy"
    xml = O.plugins_xml(str(env / "lib" / "python3.10" / "site-packages" / "fastdeploy"))
    os.makedirs(os.path.dirname(xml))
    with open(xml, "w", encoding="utf-8") as f:
        f.write(SHIPPED)
    (env / "bin").mkdir()
    (env / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # never run: the environment counts as current
    (env / "bin" / "python").chmod(0o755)
    (env / envs.MARKER).write_text(json.dumps(envs._env_record(envs.ENVS["fastdeploy"])), encoding="utf-8")
    assert O.cpu_precision(xml, BF16_CPU) == "bf16"
    assert envs.ensure_env("fastdeploy", log=lambda msg: pytest.fail(f"rebuilt: {msg}")) == str(env / "bin" / "python")
    assert O.cpu_precision(xml, BF16_CPU) == "f32"
