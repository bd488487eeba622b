"""The command line (``convert_checkpoint.py``) that converts a model directory both ways between this toolkit
(= PaddleNLP's layout) and HF transformers' ERNIE (PyTorch).

Contract:

* **ours -> HF** (:func:`to_hf`): a directory with ``model_state.pdparams`` + ``config.json`` / ``model_config.json``
  (a pretraining checkpoint, a fine-tuned model or a PaddleNLP ERNIE 1.0 dir) becomes a directory that
  ``transformers``' own classes load: ``config.json`` (``model_type: ernie``, ``architectures``), ``model.safetensors``,
  ``vocab.txt``, ``tokenizer_config.json`` (``BertTokenizer``), ``special_tokens_map.json`` and ``tokenizer.json``.
  Architectures: ErnieForPretraining -> ErnieForPreTraining, ErnieForMaskedLM, ErnieForSequenceClassification,
  ErnieForTokenClassification, ErnieForQuestionAnswering and the bare ErnieModel.
* **HF -> ours** (:func:`from_hf`): the reverse, into a directory every entry point of ours loads (with ``label.txt``
  for a classifier whose config names its labels). The weights may be ``model.safetensors``, a sharded
  ``model.safetensors.index.json`` or (when torch is installed) ``pytorch_model.bin``.

The format itself (file names, weight and config names ours <-> HF, reading HF weights as numpy) is
``ernie.weights``, which ``ernie.configuration`` and ``ernie.modeling`` build on to load an HF directory given as
``--model_name_or_path``; this module only adds whole-directory conversion (tokenizer files, labels, atomic output)
and the command line. Arrays are copied bit for bit, so ours -> HF -> ours gives back the identical weights.
"""

from __future__ import annotations

import json
import os
import warnings

from safetensors.numpy import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ernie.configuration import ErnieConfig, hf_config, resolve_config_file
from ernie.tokenizer import ErnieTokenizer, punctuation_class, write_tokenizer_files
from ernie.utils import (
    ArgumentParser,
    UserError,
    atomic_dir,
    atomic_write,
    check_output_path,
    cli_main,
    read_label_file,
    write_label_file,
)
from ernie.weights import (
    ARCHITECTURES,
    CLASSIFIERS,
    CONFIG_NAME,
    HF_ARCHITECTURES,
    HF_SAFETENSORS,
    HF_WEIGHT_FILES,
    WEIGHTS_NAME,
    config_to_hf,
    hf_architecture,
    infer_architecture,
    is_hf_dir,
    numpy_state,
    read_hf_weights,
    read_json_object,
    state_from_hf,
    state_to_hf,
)


# ---- whole directories ----------------------------------------------------------------------------------------------
def _load_tokenizer(directory: str, flag: str) -> ErnieTokenizer:
    if not os.path.isfile(os.path.join(directory, "vocab.txt")):
        raise UserError(f"{flag} {directory}: no vocab.txt in this directory (give --tokenizer_name_or_path)")
    return ErnieTokenizer.from_pretrained(directory)


def fast_tokenizer_json(tokenizer) -> str:
    """HF ``tokenizer.json`` (the ``tokenizers`` library's format, what AutoTokenizer loads) that gives our ids.

    BERT's pre-tokenizer splits off ASCII and Unicode P* chars only; ours (= PaddleNLP's ErnieTokenizer) also every
    symbol (S*: ``～ ℃ ×`` ...), so a Split on our punctuation class follows it."""
    fast = Tokenizer(
        models.WordPiece(vocab=dict(tokenizer.vocab), unk_token=tokenizer.unk_token, max_input_chars_per_word=100)
    )
    fast.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=tokenizer.do_lower_case
    )
    fast.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.BertPreTokenizer(),
            pre_tokenizers.Split(Regex(f"[{punctuation_class()}]"), behavior="isolated"),
        ]
    )
    cls, sep = tokenizer.cls_token, tokenizer.sep_token
    fast.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.cls_token_id), (sep, tokenizer.sep_token_id)],
    )
    fast.decoder = decoders.WordPiece(prefix="##")
    fast.add_special_tokens(tokenizer.all_special_tokens)
    return fast.to_str()


def write_hf_tokenizer(tokenizer, directory: str, model_max_length: int) -> None:
    """vocab.txt + tokenizer_config.json + special_tokens_map.json that HF's BertTokenizer loads, and the
    tokenizer.json that AutoTokenizer (BertTokenizerFast) loads."""
    with atomic_write(os.path.join(directory, "tokenizer.json"), "w") as f:
        f.write(fast_tokenizer_json(tokenizer))

    special = {
        name: getattr(tokenizer, name) for name in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    }
    write_tokenizer_files(
        directory,
        tokenizer.ids_to_tokens,
        tokenizer.do_lower_case,
        special,
        extra_config={
            "tokenizer_class": "BertTokenizer",
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "model_max_length": model_max_length,
        },
    )


def to_hf(
    src: str, dst: str, architecture: str | None = None, tokenizer_dir: str | None = None, overwrite: bool = False
) -> str:
    """Convert our / PaddleNLP's model directory ``src`` into an HF transformers directory ``dst``; returns the HF
    architecture written."""
    from ernie.modeling import read_state_dict  # delays importing Paddle until a conversion runs (not for --help)

    config_file = resolve_config_file(src)
    config = ErnieConfig.from_file(config_file)
    paddle_file = os.path.join(src, WEIGHTS_NAME)
    if not os.path.isfile(paddle_file):
        raise UserError(f"--input {src}: no {WEIGHTS_NAME} in this directory")
    state, source = read_state_dict(src)
    state = numpy_state(state, source)
    declared = architecture or (config.extra.get("architectures") or [None])[0] or config.extra.get("init_class")
    arch = infer_architecture(declared, state, config_file)
    hf_state = state_to_hf(state, arch, source)
    tokenizer = _load_tokenizer(tokenizer_dir or src, "--tokenizer_name_or_path" if tokenizer_dir else "--input")
    if tokenizer.vocab_size > config.vocab_size:
        raise UserError(
            f"{src}: the vocabulary has {tokenizer.vocab_size} tokens but the model only {config.vocab_size} embeddings"
        )
    hf_cfg = config_to_hf(config, arch, read_label_file(src))
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        save_file(hf_state, os.path.join(tmp, HF_SAFETENSORS), metadata={"format": "pt"})
        with atomic_write(os.path.join(tmp, CONFIG_NAME), "w") as f:
            f.write(json.dumps(hf_cfg, indent=2, ensure_ascii=False) + "\n")
        write_hf_tokenizer(tokenizer, tmp, config.max_position_embeddings)
    return ARCHITECTURES[arch]


def from_hf(
    src: str, dst: str, architecture: str | None = None, tokenizer_dir: str | None = None, overwrite: bool = False
) -> str:
    """Convert an HF transformers ERNIE directory ``src`` into our model directory ``dst`` (loadable by every entry
    point of ours and by PaddleNLP); returns our architecture written."""
    from ernie import modeling  # delays importing Paddle until a conversion runs (not for --help)

    if not is_hf_dir(src):
        raise UserError(
            f"--input {src}: not an HF model directory (no {' / '.join(HF_WEIGHT_FILES)}, or it holds {WEIGHTS_NAME})"
        )
    cfg_path = os.path.join(src, CONFIG_NAME)
    raw_cfg = read_json_object(cfg_path)
    config = hf_config(src)
    hf_state, source = read_hf_weights(src)
    declared = (raw_cfg.get("architectures") or [None])[0]
    if architecture is None and declared is not None and declared not in HF_ARCHITECTURES:
        raise UserError(
            f"{cfg_path}: architecture {declared!r} has no class here (known: "
            f"{', '.join(sorted(HF_ARCHITECTURES))}); pass --architecture to convert it as one of ours"
        )
    arch = infer_architecture(architecture or hf_architecture(raw_cfg), hf_state, cfg_path)
    state = state_from_hf(hf_state, source)
    model = getattr(modeling, arch)(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = model.load_weights(state, source=source)
    if report["missing"] or report["unexpected"]:
        raise UserError(
            f"{source}: does not fit {arch}: missing {', '.join(report['missing']) or 'none'}; "
            f"unexpected {', '.join(report['unexpected']) or 'none'}"
        )
    tokenizer = _load_tokenizer(tokenizer_dir or src, "--tokenizer_name_or_path" if tokenizer_dir else "--input")
    id2label = config.extra.get("id2label")
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if arch in CLASSIFIERS and isinstance(id2label, dict):
            write_label_file(tmp, [id2label[str(i)] for i in range(len(id2label))])
    return arch


# ---- command line ---------------------------------------------------------------------------------------------------
def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        allow_abbrev=False,
        prog="convert_checkpoint.py",
        description="Convert an ERNIE model directory between this toolkit / PaddleNLP (model_state.pdparams) and HF "
        "transformers (model.safetensors).",
    )
    p.add_argument("--input", required=True, help="model directory to convert")
    p.add_argument("--output", required=True, help="directory to write (refused if it exists, unless --overwrite)")
    p.add_argument(
        "--to",
        required=True,
        choices=["hf", "paddle"],
        help="hf: ours/PaddleNLP -> HF transformers; paddle: HF transformers -> ours",
    )
    p.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        help="model class (our names); default: the config's architectures, else implied by the weights",
    )
    p.add_argument("--tokenizer_name_or_path", help="directory with vocab.txt; default: --input")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return p


@cli_main
def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    if not os.path.isdir(a.input):
        raise UserError(f"--input {a.input}: no such directory")
    src, dst = os.path.realpath(a.input), os.path.realpath(a.output)
    if dst == src or dst.startswith(src.rstrip(os.sep) + os.sep):
        raise UserError(
            f"--output {a.output} is {'--input' if dst == src else 'inside --input'} {a.input}: "
            "converting would replace the model being read; choose another --output"
        )
    check_output_path(os.path.abspath(a.output.rstrip("/")), a.overwrite)
    convert = to_hf if a.to == "hf" else from_hf
    arch = convert(a.input, a.output, a.architecture, a.tokenizer_name_or_path, overwrite=a.overwrite)
    print(f"wrote {arch} to {a.output}")
