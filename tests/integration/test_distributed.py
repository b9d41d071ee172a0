"""Data-parallel training for real: torchrun with 2 CPU processes (gloo) against one process.

Each pair trains the same config with the same global batch; DDP must reproduce the single
process's losses and accuracies (up to float summation order), and rank 0 alone writes outputs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from inprocess import robustai
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow

# 383 training images in batches of 64: the last global batch (63) splits unevenly over 2 ranks.
BASE = [
    "data=synthetic",
    "trainer.epochs=3",
    "trainer.progress=false",
    "trainer.watchdog.samples=32",
    "evaluator.curve.enabled=false",
    "evaluator.sanity.enabled=false",
    "logger.image_grid=0",
]


def _env(tmp: Path) -> dict[str, str]:
    scratch = tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    # One thread per process: 2 processes share the CPU cores. TMPDIR: to see what ranks leave.
    return {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(scratch),
    }


def run(cmd: list[str], tmp: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600, env=_env(tmp))
    assert proc.returncode == expect, proc.stderr[-4000:]
    return proc


def in_process(tmp: Path, *args: str) -> None:
    """``robustai train *args`` in this process (tests/inprocess.py), where torch is imported
    already: the run that DDP is compared with needs no launcher of its own."""
    proc = robustai("train", *args, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]


def single(tmp: Path, *overrides: str) -> Path:
    out = tmp / "single"
    in_process(tmp, *overrides, f"hydra.run.dir={out}")
    return out


def torchrun(tmp: Path, *overrides: str) -> Path:
    """2 processes; the run folder is left to Hydra's time-stamped default under ``exp/``."""
    exp = tmp / "exp"
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "robustai",
            "train",
            "trainer=ddp",
            *overrides,
            f"paths.experiments_dir={exp}",
        ],
        tmp,
    )
    found = [p.parent for p in exp.rglob("metrics.json")]
    assert len(found) == 1, f"expected one run folder, found {found}"
    return found[0]


def scalars(run_dir: Path, tag: str) -> list[float]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def assert_one_set_of_outputs(ddp: Path, one: Path, tmp: Path) -> None:
    def kinds(folder: Path) -> list[str]:
        tb = "events.out.tfevents."
        return sorted(tb if p.name.startswith(tb) else p.name for p in folder.iterdir())

    assert kinds(ddp) == kinds(one)  # the same files, one TensorBoard event file each
    assert len(list((ddp / "checkpoints").iterdir())) == len(list((one / "checkpoints").iterdir()))
    log = (ddp / "train.log").read_text()
    assert "rank 0 of 2" in log and "rank 1" not in log
    assert not list((tmp / "scratch").glob("robustai-rank*")), "a rank left its scratch folder"


@pytest.fixture(scope="module")
def adversarial_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("ddp_adv")
    args = [*BASE, "attack=fgsm"]  # deterministic attack: per-rank examples equal the global ones
    return torchrun(tmp, *args), single(tmp, *args), tmp


def test_ddp_matches_one_process_with_the_same_global_batch(adversarial_pair) -> None:
    ddp, one, _ = adversarial_pair
    for tag in ("train/loss", "train/adv_acc", "train/acc", "val/clean_acc"):
        assert scalars(ddp, tag) == pytest.approx(scalars(one, tag), abs=1e-4), tag
    m_ddp, m_one = metrics(ddp), metrics(one)
    assert m_ddp["clean_acc"] == pytest.approx(m_one["clean_acc"], abs=1e-6)
    assert m_ddp["robust_acc"] == pytest.approx(m_one["robust_acc"], abs=0.01)
    assert m_ddp["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert m_one["distributed"] is None
    assert m_ddp["epochs"] == 3
    assert scalars(ddp, "train/loss")[-1] < scalars(ddp, "train/loss")[0]  # it did learn


def test_ddp_writes_one_set_of_outputs(adversarial_pair) -> None:
    ddp, one, tmp = adversarial_pair
    assert_one_set_of_outputs(ddp, one, tmp)


# hooks: what grad_sample_mode=auto takes on CUDA for small models
@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_dpsgd_under_ddp_computes_the_one_process_gradients(tmp_path: Path, mode: str) -> None:
    # Sample rate 1 (batch >= N), clipping norm far above every gradient, negligible noise:
    # DP-SGD is then full-batch gradient descent, so distributed Opacus (per-rank clipping,
    # noise on rank 0, all-reduce, every rank dividing by q*N/2) must give the same steps.
    args = [
        *BASE,
        "model=mlp",
        "attack=fgsm",
        "privacy=dpsgd",
        f"privacy.grad_sample_mode={mode}",
        "privacy.noise_multiplier=1e-9",
        "privacy.max_grad_norm=1000",
        "privacy.accountant=rdp",
        "data.batch_size=512",
        "trainer.lr=0.5",
        "trainer.epochs=4",
    ]
    ddp, one = torchrun(tmp_path, *args), single(tmp_path, *args)
    for tag in ("train/loss", "train/acc", "val/clean_acc"):
        assert scalars(ddp, tag) == pytest.approx(scalars(one, tag), abs=1e-4), tag
    assert scalars(one, "val/clean_acc")[-1] > 0.8
    assert_one_set_of_outputs(ddp, one, tmp_path)


def test_dpsgd_under_ddp_reports_the_one_process_epsilon(tmp_path: Path) -> None:
    args = [*BASE, "model=mlp", "attack=fgsm_rs", "privacy=dpsgd", "privacy.noise_multiplier=1.0"]
    # Noise comes from OS entropy, so the watchdog may stop one run early and not the other,
    # and the fewer steps spend less: off here, both runs take all their steps.
    args.append("trainer.watchdog.enabled=false")
    ddp, one = torchrun(tmp_path, *args), single(tmp_path, *args)
    assert not metrics(ddp)["stopped_early"] and not metrics(one)["stopped_early"]
    p_ddp, p_one = metrics(ddp)["privacy"], metrics(one)["privacy"]
    for key in (
        "epsilon",
        "delta",
        "sample_rate",
        "steps",
        "noise_multiplier",
        "expected_batch_size",
        "num_samples",
    ):
        # epsilon to 1e-12: the one-process run, in this process, and a torchrun rank computed
        # 0.7131659222439466 and ...479 for the same history (numpy's summation order under
        # another number of threads, we assume)
        assert p_ddp[key] == pytest.approx(p_one[key], rel=1e-12), (key, p_ddp[key], p_one[key])
    assert 1.0 < p_ddp["epsilon"] < 20.0
    assert scalars(ddp, "privacy/epsilon") == pytest.approx(scalars(one, "privacy/epsilon"))
    # Noise and sampling draw from OS entropy, so accuracies of two such short runs differ by
    # chance; that DDP computes the single-process steps is the near-deterministic test above.


def test_a_submitit_job_with_two_tasks_trains_one_ddp_run(tmp_path: Path) -> None:
    # The same code path as hydra/launcher=slurm_ddp, with submitit's local executor.
    sweep = tmp_path / "sweep"
    run(
        [
            sys.executable,
            "-m",
            "robustai",
            "train",
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.tasks_per_node=2",
            "trainer=ddp",
            *BASE,
            "model=mlp",
            "trainer.epochs=2",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    found = list(sweep.rglob("metrics.json"))
    assert len(found) == 1
    assert metrics(found[0].parent)["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert "rank 1" not in (found[0].parent / "train.log").read_text()


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["trainer=ddp"], "trainer=ddp needs a launcher"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, [], "would train 2 separate copies; add trainer=ddp"),
        ({"RANK": "1", "WORLD_SIZE": "2"}, ["-m", "trainer=ddp"], "cannot run under torchrun"),
        ({}, ["-m", "hydra/launcher=slurm_ddp"], "starts 4 processes per run"),
        (  # refused by every rank, after rank 0 had made the run folder
            {"RANK": "0", "WORLD_SIZE": "2"},
            ["trainer=ddp", "trainer.backend=nccl", "trainer.device=cpu"],
            "trainer.backend=nccl connects GPUs, and this run trains on cpu",
        ),
        # a single run launches nothing: refused as needing a launcher, after its folder was made
        ({}, ["hydra/launcher=slurm_ddp", "trainer=ddp"], "but only for a sweep: add -m"),
        (  # each rank failed in TensorLoader.shard, a traceback per process
            {"RANK": "0", "WORLD_SIZE": "3"},
            ["trainer=ddp", "data.batch_size=2"],
            "data.batch_size=2 is smaller than the 3 processes: each needs at least one image",
        ),
        (
            {},
            ["-m", "hydra/launcher=slurm_ddp", "trainer=ddp", "data.batch_size=3"],
            "data.batch_size=3 is smaller than the 4 processes",
        ),
    ],
)
def test_a_launch_that_does_not_fit_trainer_distributed_exits_2(
    tmp_path: Path,
    env: dict[str, str],
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In this process, with the variables torchrun would set: refused before any rank starts.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proc = robustai(
        "train",
        *args,
        "data=synthetic",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_evaluate_under_torchrun_is_refused_before_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank evaluated the whole model and wrote the same folder's reports at once."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    proc = robustai(
        "evaluate", f"checkpoint={tmp_path}", f"hydra.run.dir={tmp_path / 'e'}", cwd=tmp_path
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "robustai evaluate runs in one process, and this is one of 2" in line
    assert not (tmp_path / "e").exists()


def test_more_processes_than_gpus_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.set_device(local_rank) past the last GPU ended in "invalid device ordinal", a
    traceback from every rank without a GPU."""
    from robustai.distributed import DistributedSetupError, init_distributed

    gpus = torch.cuda.device_count()
    for name, value in {"RANK": gpus, "WORLD_SIZE": gpus + 1, "LOCAL_RANK": gpus}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(DistributedSetupError, match=f"no GPU of its own: this machine has {gpus}"):
        init_distributed("auto", "cuda")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trainer.backend=nccl"], "trainer.backend=nccl connects GPUs, and this run trains on"),
        (  # one training image: the rank with an empty shard failed, the other hung in gloo
            ["data.num_samples=3", "data.num_classes=2", "privacy=dpsgd"],
            "1 training record(s) cannot be shared by 2 processes",
        ),
        (  # one training image: both ranks "trained" with no step and exited 0
            ["data.num_samples=3", "data.num_classes=2"],
            "1 training image(s) make no training step: one needs at least 2 (1 for each of 2",
        ),
    ],
)
def test_a_run_ddp_cannot_train_is_one_line_from_every_rank(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "robustai", "train", "trainer=ddp", *BASE, "attack=none", "evaluator.attacks=[]",
         *args, f"paths.experiments_dir={tmp_path / 'exp'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )  # fmt: skip
    # torchrun reports a failed worker with a traceback of its own; none may come from robustai
    # (a rank that fails first may get the other one stopped before it prints its line).
    assert proc.returncode != 0 and "robustai/" not in proc.stderr, proc.stderr[-4000:]
    errors = [ln for ln in proc.stderr.splitlines() if "robustai train: error:" in ln]
    assert errors and all(message in ln for ln in errors), proc.stderr[-4000:]
    assert not list((tmp_path / "exp").rglob("weights.safetensors"))


def _torchrun_cmd(run: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "robustai", "train", "trainer=ddp", *RESUME_ARGS, *extra, f"hydra.run.dir={run}",
    ]  # fmt: skip


# FGSM-RS: every rank draws its own random starts, which a resumed run must draw again exactly
# (each rank restores its own generator state); long enough to be interrupted mid-epoch.
RESUME_ARGS = [
    "data=synthetic", "data.num_samples=4096", "data.batch_size=16", "attack=fgsm_rs",
    "trainer.epochs=3", "trainer.watchdog.samples=64", "trainer.progress=false", "logger=none",
    "evaluator.curve.enabled=false", "evaluator.sanity.enabled=false",
]  # fmt: skip


def _interrupted_in_epoch_2(part: Path, tmp: Path, cmd: list[str] | None = None) -> str:
    """Start ``cmd`` (by default the two-process run of :data:`RESUME_ARGS`) into ``part`` and
    send it SIGTERM a tenth of an epoch into epoch 2 (torchrun passes it on to both ranks); its
    stderr."""
    proc = subprocess.Popen(
        cmd or _torchrun_cmd(part), cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(tmp),
    )  # fmt: skip
    log = part / "train.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and "epoch 1/3" in log.read_text()):
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run did not reach epoch 2 in time"
        time.sleep(0.05)
    seconds = float(re.search(r"epoch 1/3 .*\| ([0-9.]+)s \|", log.read_text()).group(1))
    time.sleep(seconds / 10)  # inside epoch 2, also when it runs faster than epoch 1 did
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    return err


def test_ddp_sigterm_then_resume_ends_like_an_uninterrupted_ddp_run(tmp_path: Path) -> None:
    full = tmp_path / "full"
    run([*_torchrun_cmd(full)], tmp_path)

    part = tmp_path / "part"
    err = _interrupted_in_epoch_2(part, tmp_path)
    log = part / "train.log"
    assert "checkpoint epoch-0001-step-" in err and "rank 0 saved the checkpoint" in err
    assert not (part / "weights.safetensors").exists()

    run([*_torchrun_cmd(part, f"trainer.resume={part}")], tmp_path)
    assert "resumed from" in log.read_text()
    wa, wb = (load_file(str(p / "weights.safetensors")) for p in (full, part))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = metrics(full), metrics(part)
    for key in ("clean_acc", "robust_acc", "epochs"):
        assert ma[key] == mb[key], key
    # The interrupted epoch's loss sums both halves on both ranks exactly once.
    ha, hb = (_history(p) for p in (full, part))
    assert [e["loss"] for e in ha] == pytest.approx([e["loss"] for e in hb], rel=1e-6)
    assert [e["images"] for e in ha] == [e["images"] for e in hb] == [3072] * 3


def test_a_ddp_run_resumes_with_another_number_of_processes(tmp_path: Path) -> None:
    """README: the number of processes may change on resume. The global batch stays the same,
    so the onecycle schedule's length does too, and the resumed epoch still counts each of its
    training images once."""
    part = tmp_path / "part"
    # One process trains on other batches than two after the resume, and the watchdog may then
    # stop the run at epoch 2 (seen under load): off, so that all three epochs are compared.
    no_watchdog = "trainer.watchdog.enabled=false"
    _interrupted_in_epoch_2(part, tmp_path, _torchrun_cmd(part, no_watchdog))
    assert not (part / "weights.safetensors").exists()
    log = part / "train.log"
    one = [
        a.replace("--nproc_per_node=2", "--nproc_per_node=1")
        for a in _torchrun_cmd(part, no_watchdog)
    ]
    run([*one, f"trainer.resume={part}"], tmp_path)
    assert "resumed from" in log.read_text()
    assert [e["images"] for e in _history(part)] == [3072] * 3
    assert (part / "weights.safetensors").exists()


def _history(run_dir: Path) -> list[dict]:
    state = json.loads((run_dir / "checkpoints" / "epoch-0003.json").read_text())["state"]
    return [e["__dict__"] for e in state["trainer"]["__dict__"]["history"]]


# DP-SGD, whose model trains inside Opacus' wrappers (around DPDDP under DDP); epochs of 192
# Poisson steps, long enough to be interrupted inside.
DP_RESUME_ARGS = [
    "data=synthetic", "data.num_samples=4096", "data.batch_size=16", "model=mlp", "attack=none",
    "privacy=dpsgd", "trainer.epochs=3", "trainer.watchdog.samples=64", "trainer.progress=false",
    "logger=none", "evaluator.curve.enabled=false", "evaluator.sanity.enabled=false",
]  # fmt: skip


def _dp_cmd(run: Path, ddp: bool, *extra: str) -> list[str]:
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    return [
        sys.executable, *(launch if ddp else ["-m"]), "robustai", "train",
        *(["trainer=ddp"] if ddp else []), *DP_RESUME_ARGS, *extra, f"hydra.run.dir={run}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def dp_uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``metrics.json``'s ``privacy`` of the uninterrupted one-process run."""
    tmp = tmp_path_factory.mktemp("dp_full")
    in_process(tmp, *DP_RESUME_ARGS, f"hydra.run.dir={tmp / 'full'}")
    return metrics(tmp / "full")["privacy"]


@pytest.mark.parametrize("first", ["ddp", "one process"])
def test_a_dpsgd_run_resumes_across_ddp_and_one_process(
    tmp_path: Path, first: str, dp_uninterrupted: dict
) -> None:
    """README: trainer.distributed, and so the number of processes, may change on resume, with
    DP-SGD as without it. The checkpoint holds the plain model's state (Opacus' wrappers, and
    DPDDP under DDP, add no key), and the accountant goes on counting: the resumed run spends
    the epsilon of an uninterrupted one."""
    part = tmp_path / "part"
    err = _interrupted_in_epoch_2(part, tmp_path, _dp_cmd(part, ddp=first == "ddp"))
    assert "checkpoint epoch-0001-step-" in err, err[-2000:]
    (saved,) = (part / "checkpoints").glob("epoch-0001-step-*.json")
    state = json.loads(saved.read_text())["state"]

    if first == "ddp":
        in_process(tmp_path, *DP_RESUME_ARGS, f"trainer.resume={part}", f"hydra.run.dir={part}")
    else:
        run(_dp_cmd(part, True, f"trainer.resume={part}"), tmp_path)
    assert "resumed from" in (part / "train.log").read_text()
    # the keys of the weights file, where the watchdog's best weights have them too
    model_keys = set(load_file(str(part / "weights.safetensors")))
    assert set(state["model"]["__dict__"]) == model_keys
    assert set(state["watchdog"]["__dict__"]["best_state"]["__dict__"]) == model_keys
    privacy = metrics(part)["privacy"]
    assert privacy["steps"] == dp_uninterrupted["steps"] == 3 * 192
    for key in ("epsilon", "sample_rate", "noise_multiplier", "delta"):
        # to the last digits (see test_dpsgd_under_ddp_reports_the_one_process_epsilon)
        assert privacy[key] == pytest.approx(dp_uninterrupted[key], rel=1e-12), key


IN_TURN_WORKER = """
import sys, time
import torch.distributed as dist
from robustai.distributed import DistContext, in_turn
from robustai.errors import DataError, UserError

rank, store, log, local, fail = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
# one machine (local rank = rank), or two (each process the first of its machine)
ctx = DistContext(rank, 2, rank if local == "one" else 0, "gloo")


def fetch():
    with open(log, "a") as f:
        f.write(f"start {rank}\\n")
    time.sleep(0.5)  # a download, in the folder the processes share
    if fail == "fail":
        raise DataError(f"could not download X (rank {rank})")
    with open(log, "a") as f:
        f.write(f"end {rank}\\n")
    return rank


try:
    assert in_turn(fetch, ctx) == rank
except UserError as e:
    with open(log, "a") as f:
        f.write(f"{rank}: {type(e).__name__}: {e}\\n")
dist.destroy_process_group()
"""


@pytest.mark.parametrize("machines", ["one", "two"])
def test_a_download_runs_on_one_process_at_a_time(
    machines: str, tmp_path: Path, two_ranks
) -> None:
    """Every rank of `torchrun ... data.download=true` fetched and unpacked the same archive into
    the same data.root at once; rank 0 now goes first, the others find the files in place."""
    script = tmp_path / "worker.py"
    script.write_text(IN_TURN_WORKER)
    log = tmp_path / "order.log"
    two_ranks(script, str(tmp_path / "store"), str(log), machines, "ok")
    assert log.read_text().split("\n")[:-1] == ["start 0", "end 0", "start 1", "end 1"]


def test_a_download_that_fails_on_rank_0_stops_every_rank_with_its_line(
    tmp_path: Path, two_ranks
) -> None:
    """Rank 1 waited at the barrier for a rank 0 that had left, and died with a traceback
    ("Connection closed by peer"); it now stops with rank 0's one line and never downloads."""
    script = tmp_path / "worker.py"
    script.write_text(IN_TURN_WORKER)
    log = tmp_path / "order.log"
    two_ranks(script, str(tmp_path / "store"), str(log), "one", "fail")
    lines = log.read_text().split("\n")[:-1]
    assert lines[0] == "start 0"
    assert sorted(lines[1:]) == [
        "0: DataError: could not download X (rank 0)",
        "1: UserError: could not download X (rank 0)",
    ]
