"""ERNIE pretraining: configuration (args), LR schedule (lr), checkpoints (checkpoint), logging (log), process
group setup (distributed) and the loop (trainer). Entry point: scripts/run_pretrain.py -> trainer.main.

Nothing here imports Paddle at package import time, so that OMP_NUM_THREADS can be set first.
"""
