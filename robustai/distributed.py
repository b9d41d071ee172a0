"""Data-parallel training across processes: torchrun (or SLURM tasks) + DistributedDataParallel.

robustai does not launch processes itself. ``torchrun`` (one machine or many, with its
rendezvous flags) or a SLURM job with one task per GPU starts one process per device; each
process calls :func:`init_distributed`, which reads the standard ``env://`` variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), deriving them through submitit
in a job it started (SLURM or local, ``tasks_per_node`` > 1), and joins the process group.

The conventions the rest of robustai follows (see docs/ARCHITECTURE.md):

- every rank holds the whole (in-memory) data set and shards each *global* batch, so
  ``data.batch_size`` means the same thing on 1 or N processes and learning rates carry over;
- the model's initial weights are rank 0's (DDP broadcasts them); each rank draws its own random
  numbers for attacks, so adversarial examples are generated per rank, on that rank's shard;
- training metrics are summed across ranks; rank 0 alone runs the epoch callbacks (validation,
  watchdog, TensorBoard, checkpoints), evaluates and writes the run folder.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from robustai.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKENDS: tuple[str, ...] = ("auto", "nccl", "gloo")
_ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedSetupError(RuntimeError):
    """The process was not started by a launcher that robustai can join."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job. ``world_size == 1``: a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def torchrun_env() -> dict[str, int] | None:
    """Rank, world size and local rank set by torchrun (``RANK`` ...), else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return {
        "rank": int(os.environ["RANK"]),
        "world_size": int(os.environ["WORLD_SIZE"]),
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
    }


def submitit_env() -> dict[str, int] | None:
    """Rank, world size and local rank of a job started by submitit (SLURM or local), else None.

    A multi-task submitit job (``tasks_per_node`` > 1) runs one process per task, like torchrun.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    from submitit import JobEnvironment

    env = JobEnvironment()
    return {"rank": env.global_rank, "world_size": env.num_tasks, "local_rank": env.local_rank}


def launcher_env() -> dict[str, int] | None:
    """This process's place as its launcher (torchrun, else submitit) set it; None if neither."""
    return torchrun_env() or submitit_env()


def process_rank() -> int:
    """This process's rank before any process group exists; 0 for a plain process. Used to keep
    ranks > 0 from writing run folders."""
    env = launcher_env()
    return env["rank"] if env is not None else 0


def export_submitit_env() -> None:
    """Set torchrun's ``env://`` variables from a submitit job's (SLURM's): the first host of the
    job is the rendezvous, the port is derived from the job id unless ``MASTER_PORT`` is set.
    Every task keeps seeing all of its node's GPUs and picks the one of its local rank."""
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def resolve_backend(backend: str, device_type: str) -> str:
    """``auto``: NCCL between GPUs, Gloo between CPU processes."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and device_type != "cuda":
        raise DistributedSetupError(
            f"trainer.backend=nccl connects GPUs, and this run trains on {device_type}; use "
            "trainer.backend=gloo (or auto) between CPU processes"
        )
    return backend


def init_distributed(
    backend: str = "auto", device_type: str = "cpu", timeout_s: float = 1800.0
) -> DistContext:
    """Join the process group the launcher prepared; returns this process's :class:`DistContext`.

    Raises :class:`DistributedSetupError` when the process was started neither by torchrun nor
    by submitit (there is nobody to rendezvous with).
    """
    if torchrun_env() is None:
        if submitit_env() is None:
            raise DistributedSetupError(
                "trainer=ddp needs a launcher that starts one process per device: "
                "torchrun --nproc_per_node=N -m robustai train trainer=ddp ..., or a submitit "
                "job with one task per device (hydra/launcher=slurm_ddp)"
            )
        export_submitit_env()
    env = torchrun_env()
    assert env is not None
    missing = [v for v in _ENV_VARS if v not in os.environ]
    if missing:
        raise DistributedSetupError(f"the launcher did not set {', '.join(missing)}")
    name = resolve_backend(backend, device_type)
    if device_type == "cuda":
        gpus = torch.cuda.device_count()
        if env["local_rank"] >= gpus:  # set_device: "invalid device ordinal", a traceback
            raise DistributedSetupError(
                f"process {env['rank']} (local rank {env['local_rank']}) has no GPU of its own:"
                f" this machine has {gpus}; start at most {gpus} processes per machine"
                f" (torchrun --nproc_per_node={max(gpus, 1)}; with Slurm, tasks_per_node equal"
                " to gpus_per_node)"
            )
        torch.cuda.set_device(env["local_rank"])
    if not dist.is_initialized():
        dist.init_process_group(name, timeout=datetime.timedelta(seconds=timeout_s))
    ctx = DistContext(env["rank"], env["world_size"], env["local_rank"], name)
    log.info(
        "distributed: rank %d of %d (local rank %d), backend %s, rendezvous %s:%s",
        ctx.rank,
        ctx.world_size,
        ctx.local_rank,
        name,
        os.environ["MASTER_ADDR"],
        os.environ["MASTER_PORT"],
    )
    return ctx


def in_turn(fn: Callable[[], T], ctx: DistContext) -> T:
    """``fn()`` on every process, but first on rank 0 alone, then on the first process of each
    other machine, then on the rest, with a barrier between: for work that writes files the
    processes share, such as a data set's download (every rank fetched and unpacked the same
    archive into the same folder at once), whether the folder is shared between machines or
    not. The processes that follow find the files in place.

    Where ``fn`` fails on a process, every process stops at the end of that turn: the ones that
    failed raise their own error, the others a :class:`UserError` of the same text where the
    error was one (the same one line on every rank), else a RuntimeError naming the rank."""
    if ctx.world_size <= 1:
        return fn()
    # each process has one turn of the three
    turns = (ctx.rank == 0, ctx.rank != 0 and ctx.local_rank == 0, ctx.local_rank != 0)
    result: list[T] = []
    for mine in turns:
        error: BaseException | None = None
        if mine:
            try:
                result.append(fn())
            except Exception as e:  # shared below, so no rank waits for a peer that left
                error = e
        failed = torch.tensor([ctx.rank + 1 if error is not None else 0], dtype=torch.long)
        if ctx.backend == "nccl":
            failed = failed.cuda()
        src = int(all_reduce(failed, "max").item()) - 1
        if src < 0:
            continue
        # every process joins the broadcasts (collectives), the failed ones too
        kind = broadcast_text("user" if isinstance(error, UserError) else "other", ctx, src)
        text = broadcast_text(str(error), ctx, src)
        if error is not None:
            raise error
        if kind == "user":
            raise UserError(text)
        raise RuntimeError(f"process {src} failed: {text}")
    return result[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int, *salt: int) -> int:
    """A seed for ``rank``'s own random stream (attack random starts), derived from the run's."""
    return int(np.random.SeedSequence([seed, rank, *salt]).generate_state(1)[0])


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (gradients averaged across ranks in backward)."""
    ids = [device.index if device.index is not None else ctx.local_rank]
    return DistributedDataParallel(model, device_ids=ids if device.type == "cuda" else None)


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``model`` itself).

    Attacks, validation and checkpoints use the inner module: a forward pass through the wrapper
    prepares a gradient all-reduce (and may broadcast buffers) that every rank must then join,
    which an attack's input-only backward, or a rank-0-only validation, never does.
    """
    return model.module if isinstance(model, DistributedDataParallel) else model


#: Where a checkpoint written before :func:`unwrap_model` kept a model's keys: under DDP's or
#: Opacus' DPDDP's ``module.``, Opacus' GradSampleModule's ``_module.``, or both.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_module.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside every training wrapper: DDP's, and under DP-SGD Opacus'
    GradSampleModule around its DPDDP (or around the model itself on one process).

    Checkpoints and rank 0's callbacks use it, so that the saved model state (and the
    watchdog's best weights) has the same keys on one process or several, with or without
    DP-SGD, and a run may resume with another number of processes. A forward pass through it is
    the wrappers' own without their hooks (Opacus' are switched off outside the training pass).
    """
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif type(model).__module__.startswith("opacus."):  # imported only where it is in use
            from opacus.distributed import DifferentiallyPrivateDistributedDataParallel
            from opacus.grad_sample import AbstractGradSampleModule

            if isinstance(model, AbstractGradSampleModule):
                model = model._module
            elif isinstance(model, DifferentiallyPrivateDistributedDataParallel):
                model = model.module
            else:
                return model
        else:
            return model


def unwrapped_state(state: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any] | None:
    """``state`` with the ``keys`` of a plain model's state dict, where it holds them under
    wrapper prefixes (:data:`WRAPPER_PREFIXES`, as checkpoints of older versions did); None
    where stripping those does not give exactly ``keys``."""
    want, out = set(keys), dict(state)
    while set(out) != want:
        prefix = next(
            (p for p in WRAPPER_PREFIXES if out and all(k.startswith(p) for k in out)), None
        )
        if prefix is None:
            return None
        out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def all_reduce(values: Tensor, op: str = "sum") -> Tensor:
    """In-place sum or max of ``values`` over all ranks (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return values


def broadcast_tensor(t: Tensor, src: int = 0) -> Tensor:
    """Rank ``src``'s ``t`` on every rank (same shape and dtype everywhere)."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(t, src)
    return t


def broadcast_text(text: str, ctx: DistContext, src: int = 0) -> str:
    """Rank ``src``'s string on every rank (e.g. rank 0's run folder)."""
    if not (ctx.world_size > 1 and dist.is_initialized()):
        return text
    device = torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else None
    raw = torch.tensor(list(text.encode()) if ctx.rank == src else [], dtype=torch.uint8)
    size = torch.tensor([len(raw)], dtype=torch.long, device=device)
    dist.broadcast(size, src)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if ctx.rank == src:
        buf.copy_(raw)
    dist.broadcast(buf, src)
    return bytes(buf.cpu().tolist()).decode()
