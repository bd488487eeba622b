"""Process-group setup for data-parallel pretraining under ``python -m paddle.distributed.launch``.

``configure_threads`` must run before Paddle is imported (the CPU math libraries read OMP_NUM_THREADS once).
:func:`check_share_folder` (collective, after ``init_distributed``) refuses a ``--share_folder`` that contradicts
what the ranks see in ``output_dir`` (:func:`detect_shared_folder`); :func:`check_batching` says which micro batch
fits a global batch over the ranks.
"""

from __future__ import annotations

import contextlib
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
    """DataLoader ``worker_init_fn``: die with the trainer (:func:`die_with_parent`), ignore Ctrl-C, and leave the
    trainer's process group, to which the terminal sends Ctrl-C and ``paddle.distributed.launch`` its SIGTERMs
    (``killpg``): the trainer finishes its step and saves (it needs the batches the workers have queued), then exits
    and takes the workers with it. (Ignoring SIGTERM instead would hang the trainer's exit: multiprocessing ends its
    daemonic children with SIGTERM and then joins them.)"""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # already a group or session leader: nothing to leave
        os.setpgid(0, 0)
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


SHARE_PROBE_PREFIX = ".share-probe-"


def detect_shared_folder(output_dir: str, env: DistEnv, wait: float = 2.0) -> bool:
    """Whether every rank sees one and the same ``output_dir`` (one folder shared by all machines), by looking.

    Collective: every rank calls it. Global rank 0 writes a file of a fresh random name holding a random token into
    ``output_dir`` (created if missing, on every rank), a barrier follows, then every rank reads that file (a new
    name, so no NFS negative-lookup cache can hide it; polled up to ``wait`` s where it is not there yet) and the
    answers are all-gathered: True iff every rank read rank 0's token. Rank 0 removes the file after a second barrier.
    One rank: True."""
    import uuid

    if env.world_size == 1:
        return True
    os.makedirs(output_dir, exist_ok=True)
    token = uuid.uuid4().hex if env.rank == 0 else ""
    token = all_gather_object(token, env.world_size)[0]
    path = os.path.join(output_dir, SHARE_PROBE_PREFIX + token)
    if env.rank == 0:
        with open(path, "w", encoding="utf-8") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
    barrier(env.world_size)
    deadline = time.time() + wait
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                seen = f.read() == token
        except OSError:
            seen = False
        if seen or time.time() >= deadline:
            break
        time.sleep(0.1)
    answers = all_gather_object(seen, env.world_size)
    if env.rank == 0:
        with contextlib.suppress(OSError):
            os.remove(path)
    barrier(env.world_size)
    return all(answers)


def check_share_folder(output_dir: str, env: DistEnv, share_folder: bool) -> None:
    """Refuse a ``--share_folder`` that contradicts what the ranks see (:func:`detect_shared_folder`).

    Collective. Only with more than one machine (more than one local rank 0): on one machine both settings write from
    rank 0 only. A folder shared by all machines with ``--share_folder false`` would have the first rank of every
    machine write the same checkpoint (the same ``.model_last.tmp``; or the output lock refuses the second machine
    after 30 s); a folder per machine with ``--share_folder true`` would leave the other machines without a
    checkpoint to resume from. Either is a :class:`UserError` on every rank saying what to pass."""
    nodes = sum(all_gather_object(env.local_rank == 0, env.world_size))
    if nodes <= 1:
        return
    shared = detect_shared_folder(output_dir, env)
    if shared and not share_folder:
        raise UserError(
            f"--share_folder: {output_dir} is one folder shared by all {nodes} machines, and with --share_folder "
            "false the first rank of every machine would write the same checkpoints; pass --share_folder true "
            "(global rank 0 writes), or give every machine its own --output_dir"
        )
    if not shared and share_folder:
        raise UserError(
            f"--share_folder: {output_dir} is not one folder shared by all {nodes} machines (some ranks do not see "
            "the files rank 0 writes there), and with --share_folder true only global rank 0 would keep checkpoints; "
            "pass --share_folder false (each machine writes its own copy), or use a shared file system"
        )


def check_batching(micro_batch_size: int, world_size: int, global_batch_size: int) -> None:
    """Refuse a global batch that ``micro_batch_size x world_size`` does not divide, saying what to set: the largest
    micro batch up to the requested one that divides ``global_batch_size / world_size`` (with the accumulation that
    gives), or the global batch to scale to. Same rule as ``ernie.training.args.derive_batching``."""
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step == 0:
        return
    hint = f"--global_batch_size {max(per_step, (global_batch_size // per_step) * per_step)}"
    if global_batch_size % world_size == 0:
        per_rank = global_batch_size // world_size
        micro = max(m for m in range(1, min(micro_batch_size, per_rank) + 1) if per_rank % m == 0)
        hint = (
            f"--micro_batch_size {micro} ({micro} x {world_size} ranks x {per_rank // micro} accumulation = "
            f"{global_batch_size}), or {hint}"
        )
    raise UserError(
        f"--global_batch_size: {global_batch_size} is not a multiple of micro_batch_size x ranks = "
        f"{micro_batch_size} x {world_size} = {per_step}; pass {hint}"
    )
