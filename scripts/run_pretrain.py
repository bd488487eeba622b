"""ERNIE 1.0 pretraining, PaddleNLP ernie-1.0 flags (+ --config YAML, --amp_dtype). See ernie/training/trainer.py.

    python -m paddle.distributed.launch --nproc_per_node 2 scripts/run_pretrain.py --config configs/pretrain/ernie-tiny-cpu.yaml
"""
from ernie.training.distributed import configure_threads

configure_threads()  # before Paddle is imported: OMP_NUM_THREADS = cores / processes on this machine, unless set

from ernie.training.trainer import main  # noqa: E402

if __name__ == "__main__":
    main()
