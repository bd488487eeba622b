"""Process-group setup for data-parallel pretraining under ``python -m paddle.distributed.launch``.

``configure_threads`` must run before Paddle is imported (the CPU math libraries read OMP_NUM_THREADS once).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass, field

from ernie.utils import UserError
from ernie.utils.cpu_tuning import default_num_threads, tune_worker_process
from ernie.utils.lock import discard_unused_output_dir, lock_output_dir  # noqa: F401  (re-exported: pretraining's lock is the shared one)


def configure_threads() -> int:
    """Set OMP_NUM_THREADS to the cores available to this process divided by the processes on this machine,
    unless the user already set it. Returns the value in effect."""
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(default_num_threads())
    return int(os.environ["OMP_NUM_THREADS"])


def under_launch() -> bool:
    return "PADDLE_LOG_DIR" in os.environ or "PADDLE_TRAINER_ENDPOINTS" in os.environ


def die_with_parent(*_worker_id) -> None:
    """Ask Linux to SIGKILL this process when its parent exits (no-op elsewhere). Also a DataLoader
    ``worker_init_fn``: Paddle's loader workers otherwise outlive a killed trainer for good."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def loader_worker_init(*_worker_id) -> None:
    """DataLoader ``worker_init_fn``: die with the trainer (:func:`die_with_parent`) and ignore Ctrl-C, which the
    terminal sends to the whole process group: the trainer finishes its step and saves (it needs the batches the
    workers have queued), then exits and takes the workers with it."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_worker_process()  # denormals flushed in this process too (docs/cpu.md)


def die_with_launcher() -> None:
    """Make this worker die when ``paddle.distributed.launch`` dies.

    The launcher starts every worker in a session of its own, so a SIGKILL to the launcher (the OOM killer, a job
    scheduler, a crash) does not reach the workers: they would go on training and writing checkpoints into the
    same output_dir as the restarted run.
    """
    if under_launch():
        die_with_parent()


@dataclass
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    host: str
    peers: list = field(default_factory=list)  # (host, pid) of every rank, gathered at start-up

    def dead_peers(self, wait: float = 1.0) -> list[int]:
        """Ranks on this machine whose process has ended (polled up to ``wait`` seconds: a peer killed a moment
        ago may still be closing its sockets). Ranks on other machines cannot be checked and are never listed."""
        deadline = time.time() + wait
        while True:
            dead = [
                r
                for r, (host, pid) in enumerate(self.peers)
                if r != self.rank and host == self.host and not process_alive(pid)
            ]
            if dead or time.time() >= deadline:
                return dead
            time.sleep(0.05)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def writes_checkpoints(self, share_folder: bool) -> bool:
        """Global rank 0 writes to a shared folder; otherwise the first rank of every machine writes its copy."""
        return self.rank == 0 if share_folder else self.local_rank == 0


def init_distributed(device: str) -> DistEnv:
    """Select the device and, under a multi-process launch, initialise the collective group (NCCL on GPU,
    gloo on CPU)."""
    import paddle
    import paddle.distributed as dist

    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise UserError(
            "--device gpu: this Paddle build has no CUDA support; pass --device cpu (or install paddlepaddle-gpu)"
        )
    try:
        paddle.set_device(device)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device {device}: {e}") from None
    world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world_size > 1:
        dist.init_parallel_env()
    env = DistEnv(
        rank=dist.get_rank() if world_size > 1 else 0,
        world_size=world_size,
        local_rank=int(os.environ.get("PADDLE_LOCAL_RANK", os.environ.get("PADDLE_RANK_IN_NODE", "0"))),
        host=socket.gethostname(),
    )
    env.peers = all_gather_object((env.host, os.getpid()), world_size)
    return env


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux: /proc; elsewhere: signal 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def all_reduce_gradients(parameters, world_size: int, bucket_numel: int = 1 << 24) -> None:
    """Average the gradients of ``parameters`` over ranks with flat all-reduces issued from Python.

    Used instead of DataParallel's reducer on CPU (gloo): the reducer all-reduces inside backward hooks, where a
    peer's death is a C++ exception that can only abort the process (SIGABRT, no message); from Python it is an
    exception that :func:`ernie.training.trainer.main` turns into a line naming the rank that died.
    """
    if world_size == 1:
        return
    import paddle
    import paddle.distributed as dist

    grads = [p.grad for p in parameters if not p.stop_gradient and p.grad is not None]
    buckets: list[list] = []
    for g in grads:  # consecutive gradients of one dtype, up to bucket_numel elements each
        last = buckets[-1] if buckets else None
        if last and last[0].dtype == g.dtype and sum(x.size for x in last) + g.size <= bucket_numel:
            last.append(g)
        else:
            buckets.append([g])
    for bucket in buckets:
        flat = paddle.concat([g.flatten() for g in bucket])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for g in bucket:
            paddle.assign(flat[offset : offset + g.size].reshape(g.shape), output=g)
            offset += g.size


def all_reduce_mean(values, world_size: int):
    """Mean over ranks of a float32 tensor (in place, returned for chaining)."""
    if world_size > 1:
        import paddle.distributed as dist

        dist.all_reduce(values)
        values /= world_size
    return values


def barrier(world_size: int) -> None:
    if world_size > 1:
        import paddle.distributed as dist

        dist.barrier()


def all_gather_object(obj, world_size: int) -> list:
    if world_size == 1:
        return [obj]
    import paddle.distributed as dist

    out: list = []
    dist.all_gather_object(out, obj)
    return out


def tell_launcher(message: str) -> None:
    """Print ``message`` on the console of ``paddle.distributed.launch`` (the parent process) as well.

    The launcher shows the log of whichever rank it notices dead first, which after a crash is often a healthy
    rank killed by the broken connection; this line makes the rank that failed first visible there. Linux only;
    skipped when not under a launch or when the launcher's stderr is a regular file.
    """
    if not under_launch():
        return
    target = f"/proc/{os.getppid()}/fd/2"
    try:
        # only a terminal or a pipe: into a regular file the launcher's own next write would overwrite the line
        if not (stat.S_ISCHR(os.stat(target).st_mode) or stat.S_ISFIFO(os.stat(target).st_mode)):
            return
        with open(target, "a") as console:
            console.write(message + "\n")
    except OSError:
        pass
