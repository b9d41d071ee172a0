"""Killed runs resume from their last complete checkpoint and end like uninterrupted ones."""

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
from inprocess import robustai
from safetensors.torch import load_file

ARGS = [
    "data=synthetic",
    "data.num_samples=4096",
    "data.batch_size=16",
    "attack=pgd",  # ten attack steps per batch: epochs long enough to be interrupted inside
    "attack.steps=10",
    "trainer.epochs=3",
    "trainer.watchdog.samples=64",
    "trainer.progress=false",
    "logger=none",
    # the runs compare the final evaluation's numbers; its sanity checks and curve add seconds
    "evaluator.sanity.enabled=false",
    "evaluator.curve.enabled=false",
]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def start(run: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "robustai", "train", *ARGS, *extra, f"hydra.run.dir={run}"],
        cwd=run.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(run: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = start(run, *extra)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def in_process_args(epochs: int = 1) -> list[str]:
    """``robustai train`` on 128 images with FGSM-RS, one thread, no sanity checks or curve:
    a run that finishes in seconds in-process."""
    tiny = [a for a in ARGS if not a.startswith(("data.num_samples", "attack", "trainer.epochs"))]
    return ["train", *tiny, "data.num_samples=128", f"trainer.epochs={epochs}", "trainer.threads=1"]


def wait_for(predicate, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the run did not get there in time")
        time.sleep(0.05)


def into_second_epoch(run: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until epoch 1 is logged, then a tenth of its time more: inside epoch 2 even when
    epoch 2 runs three times as fast as epoch 1 did (seen when the load on the machine fell; a
    third of epoch 1's time then landed the signal in epoch 3)."""
    log = run / "train.log"
    pattern = re.compile(r"epoch 1/3 .*\| ([0-9.]+)s \|")
    wait_for(lambda: (log.exists() and pattern.search(log.read_text())) or proc.poll() is not None)
    match = pattern.search(log.read_text())
    assert match and proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(float(match.group(1)) / 10)


def same_result(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    for key in ("clean_acc", "robust_acc", "worst_case_acc", "epochs"):
        assert ma[key] == mb[key], key
    assert ma["watchdog"]["history"] == mb["watchdog"]["history"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    proc = finish(run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start(run)
    into_second_epoch(run, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run / "weights.safetensors").exists()
    assert not list((run / "checkpoints").glob("epoch-0002*"))

    resumed = finish(run, f"trainer.resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (run / "train.log").read_text()
    same_result(uninterrupted, run)


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_says_how_to_resume_and_resumes_exactly(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start(run)
    into_second_epoch(run, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    line = err.strip().splitlines()[-1]
    assert line.startswith("robustai train: error: interrupted at epoch 2, step ")
    assert f"resume with: robustai train trainer.resume={run}" in line
    assert list((run / "checkpoints").glob("epoch-0001-step-*.json"))

    # Re-running in the same folder continues too (no trainer.resume needed).
    resumed = finish(run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    same_result(uninterrupted, run)


def test_resume_with_a_different_config_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    small = [*ARGS, "data.num_samples=256", "trainer.epochs=1", f"hydra.run.dir={run}"]
    assert robustai("train", *small, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = robustai("train", *small, "trainer.lr=0.5", f"trainer.resume={run}", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "cannot resume from" in line and "trainer.lr: 0.1 -> 0.5" in line
    # refused before anything is written: the run's recorded config still matches its weights
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_ctrl_c_in_the_final_evaluation_says_in_one_line_what_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside the training loop no stop handler catches Ctrl-C: it ended in a traceback."""
    import robustai.cli.pipeline as pipeline
    from robustai.cli.main import main

    def ctrl_c(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    run = tmp_path / "run"
    args = in_process_args()
    monkeypatch.setattr(pipeline, "run_evaluation", ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        try:
            main([*args, f"hydra.run.dir={run}"])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped the command: a KeyboardInterrupt traceback")
    assert stopped.value.code == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "robustai train: error: interrupted; checkpoint epoch-0001.json is kept; resume with: "
        f"robustai train trainer.resume={run} (and the same overrides)"
    )
    monkeypatch.undo()
    assert main([*args, f"trainer.resume={run}"]) == 0
    assert (run / "metrics.json").is_file() and "resumed from" in (run / "train.log").read_text()


class _Killed(BaseException):
    """What SIGTERM raises in this test when robustai installs no handler of its own."""


def test_sigterm_in_the_final_evaluation_says_in_one_line_what_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM (a scheduler's, or `kill`) outside the training loop ended the run silently with
    Python's default action; it now stops like Ctrl-C there: status 143 and one line."""
    import robustai.cli.pipeline as pipeline
    from robustai.cli.main import main

    def sigterm(*args, **kwargs):  # type: ignore[no-untyped-def]
        signal.raise_signal(signal.SIGTERM)

    def killed(signum, frame):  # type: ignore[no-untyped-def]
        raise _Killed  # stands in for the default action, which would end pytest itself

    run = tmp_path / "run"
    args = in_process_args()
    monkeypatch.setattr(pipeline, "run_evaluation", sigterm)
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        with pytest.raises(SystemExit) as stopped:
            try:
                main([*args, f"hydra.run.dir={run}"])
            except _Killed:
                pytest.fail("SIGTERM outside the training loop was not handled")
        assert signal.getsignal(signal.SIGTERM) is killed  # the caller's handler is restored
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "robustai train: error: interrupted; checkpoint epoch-0001.json is kept; resume with: "
        f"robustai train trainer.resume={run} (and the same overrides)"
    )


def test_sigterm_at_the_end_of_the_last_epoch_stops_before_the_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stop request in the last epoch's last step or end-of-epoch work was swallowed: the run
    went through the whole final evaluation and exited 0. It stops there now, like elsewhere."""
    from robustai.cli.main import main
    from robustai.training.callbacks import CheckpointCallback

    real = CheckpointCallback.on_epoch_end

    def term_then_save(self, trainer, stats):  # type: ignore[no-untyped-def]
        signal.raise_signal(signal.SIGTERM)  # robustai's stop handler is active here
        real(self, trainer, stats)

    run = tmp_path / "run"
    args = in_process_args()
    monkeypatch.setattr(CheckpointCallback, "on_epoch_end", term_then_save)
    with pytest.raises(SystemExit) as stopped:
        main([*args, f"hydra.run.dir={run}"])
    assert stopped.value.code == 128 + signal.SIGTERM
    assert not (run / "metrics.json").exists() and not (run / "weights.safetensors").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "robustai train: error: interrupted; checkpoint epoch-0001.json is kept; resume with: "
        f"robustai train trainer.resume={run} (and the same overrides)"
    )
    monkeypatch.undo()
    assert main([*args, f"trainer.resume={run}"]) == 0
    assert (run / "metrics.json").is_file()


def test_resuming_into_another_runs_folder_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``trainer.resume=A hydra.run.dir=B`` with B a finished run (here without checkpoints,
    which a plain run into B is refused for) trained over B's weights and metrics."""
    from robustai.cli.main import main

    args = in_process_args()
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*args, f"hydra.run.dir={a}"]) == 0
    assert main([*args, "trainer.checkpoint_every=0", f"hydra.run.dir={b}"]) == 0
    before = {p: p.read_bytes() for p in b.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main([*args, f"trainer.resume={a}", f"hydra.run.dir={b}"])
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    held = "weights.safetensors, metrics.json, report.json"
    assert f"hydra.run.dir={b} holds another run ({held}" in line
    assert {p: p.read_bytes() for p in b.rglob("*") if p.is_file()} == before
    # Into a new folder the resume goes on (a finished run: evaluated again there).
    c = tmp_path / "c"
    assert main([*args, f"trainer.resume={a}", f"hydra.run.dir={c}"]) == 0
    assert (c / "metrics.json").is_file() and "resumed from" in (c / "train.log").read_text()


def _steps(run: Path) -> dict[str, list[int]]:
    """Each tag's steps as TensorBoard's own loader (the one its plugins read) sees them."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    return {t: [e.step for e in acc.Tensors(t)] for t in acc.Tags()["tensors"]}


def test_a_resumed_run_logs_each_step_to_tensorboard_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after TensorBoard logged an epoch (or the final evaluation) that its last
    checkpoint does not cover logged those steps again when resumed: two points at one step."""
    import robustai.cli.pipeline as pipeline
    from robustai.cli.main import main
    from robustai.training.callbacks import CheckpointCallback

    real_save, real_write = CheckpointCallback.on_epoch_end, pipeline.write_json

    def killed_before_epoch_2s_checkpoint(self, trainer, stats):  # type: ignore[no-untyped-def]
        if trainer.epoch == 2:  # TensorBoard (a later callback) has logged step 1, not 2
            raise KeyboardInterrupt
        real_save(self, trainer, stats)

    def killed_before_metrics(path, data):  # type: ignore[no-untyped-def]
        if path.name == "metrics.json":  # the final evaluation is in the event file
            raise KeyboardInterrupt
        real_write(path, data)

    args = [a for a in in_process_args(epochs=3) if a != "logger=none"]
    run = tmp_path / "run"
    for kill in (killed_before_epoch_2s_checkpoint, killed_before_metrics):
        with monkeypatch.context() as mp:
            if kill is killed_before_metrics:
                mp.setattr(pipeline, "write_json", kill)
            else:
                mp.setattr(CheckpointCallback, "on_epoch_end", kill)
            with pytest.raises(SystemExit) as stopped:
                main([*args, f"hydra.run.dir={run}"])
            assert stopped.value.code == 128 + signal.SIGINT
    assert main([*args, f"hydra.run.dir={run}"]) == 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 3
    steps = _steps(run)
    assert steps["train/loss"] == [1, 2, 3] and steps["lr"] == [1, 2, 3]
    assert steps["eval/clean_acc"] == [3]
    assert steps["config/text_summary"] == [0]
    twice = {tag: s for tag, s in steps.items() if len(s) != len(set(s))}
    assert twice == {}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_an_event_file_that_cannot_be_written_ends_the_run_in_one_line_with_the_epoch_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The disk filling up under TensorBoard's event file (the kernel's own ENOSPC: after epoch
    2's checkpoint the file is set aside and its name links to /dev/full, which TensorBoard
    opens at its next write) printed the writer thread's traceback and a second one, and lost
    the epoch, as the checkpoint came after TensorBoard. Now: one line, exit 1, epoch 2's
    checkpoint kept, and once the file is back the resumed run holds every step once."""
    from robustai.training.callbacks import CheckpointCallback

    real_save = CheckpointCallback.on_epoch_end
    aside: list[tuple[Path, Path]] = []

    def disk_fills_after_the_checkpoint(self, trainer, stats):  # type: ignore[no-untyped-def]
        real_save(self, trainer, stats)
        if trainer.epoch == 2:
            (events,) = run.glob("events.out.tfevents.*")
            kept = tmp_path / events.name
            events.rename(kept)
            events.symlink_to("/dev/full")
            aside.append((events, kept))

    args = [a for a in in_process_args(epochs=3) if a != "logger=none"]
    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(CheckpointCallback, "on_epoch_end", disk_fills_after_the_checkpoint)
        done = robustai(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    err = done.stderr + capfd.readouterr().err  # the writer thread prints to the real stderr
    assert done.returncode == 1, err
    assert "Traceback" not in err and "Exception in thread" not in err
    (line,) = [x for x in done.stderr.splitlines() if "error" in x]
    assert f"TensorBoard could not write its event file in {run}" in line
    assert "No space left on device" in line and "trainer.resume=" in line
    from robustai.training.checkpoint import list_checkpoints

    assert list_checkpoints(run / "checkpoints")[0].epoch == 2
    assert not (run / "metrics.json").exists()
    ((events, kept),) = aside  # space freed: the file is back
    events.unlink()
    kept.rename(events)
    assert robustai(*args, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    steps = _steps(run)
    assert steps["train/loss"] == [1, 2, 3] and steps["lr"] == [1, 2, 3]
    assert steps["eval/clean_acc"] == [3]


def test_the_resume_command_printed_for_a_folder_with_spaces_can_be_pasted(
    tmp_path: Path,
) -> None:
    """The one line names the command as the shell must read it: the folder is one word."""
    import shlex

    from robustai.cli.pipeline import interrupted_message

    run = tmp_path / "my runs" / "it's run 1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch-0001.json").write_text("{}")
    message = interrupted_message(run)
    command = message.split("resume with: ", 1)[1].removesuffix(" (and the same overrides)")
    assert shlex.split(command) == ["robustai", "train", f"trainer.resume={run}"]


def test_outside_the_loop_under_ddp_rank_0_names_the_torchrun_resume_and_others_defer() -> None:
    """Rank 1 named its private scratch folder ("nothing to resume"), contradicting rank 0,
    whose `robustai train ...` hint fails for trainer=ddp without torchrun."""
    import shlex
    import tempfile

    from robustai.cli.pipeline import interrupted_message
    from robustai.distributed import DistContext

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "epoch-0001.json").write_text("{}")
        main = interrupted_message(run, DistContext(0, 2, 0, "gloo"))
        command = main.split("resume with: ", 1)[1].removesuffix(" (and the same overrides)")
        words = shlex.split(command)
        assert " ".join(words[:5]) == "torchrun --nproc_per_node=N -m robustai train"
        other = interrupted_message(Path(tmp) / "scratch", DistContext(1, 2, 1, "gloo"))
        assert other == "interrupted; rank 0 reports what is left to resume"


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigterm_to_a_joblib_sweep_stops_every_member_with_a_checkpoint_and_leaves_no_worker(
    tmp_path: Path,
) -> None:
    """SIGTERM to the launching process alone (a scheduler's, or `kill <pid>`) killed it and
    left the joblib workers training as orphans, and SIGINT made joblib kill them mid-step.
    Now each running member gets the signal, checkpoints as a single run does, and the
    launching process waits for them and says how to resume the sweep."""
    sweep = tmp_path / "sweep"
    tiny = [a for a in ARGS if not a.startswith(("data.num_samples", "trainer.epochs"))]
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "robustai", "train", "-m", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2", *tiny, "data.num_samples=1024", "trainer.epochs=10",
            "trainer.threads=1", "trainer.seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    workers: set[int] = set()
    try:
        logs = [sweep / m / "train.log" for m in ("0", "1")]
        # Both members past their first epoch: inside the training loop, with a checkpoint.
        wait_for(
            lambda: (
                all(p.exists() and "epoch 1/10 " in p.read_text() for p in logs)
                or proc.poll() is not None
            ),
            timeout=240,
        )
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        workers = _children(proc.pid)
        assert len(workers) >= 2, "the joblib workers were not found"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
        lines = err.strip().splitlines()
        assert lines[-1] == (
            "robustai train: error: sweep interrupted (SIGTERM); 2 running member(s) stopped,"
            f" each saying above what it kept; resume the sweep with the same command and"
            f" hydra.sweep.dir={sweep}"
        )
        wait_for(lambda: not _alive(workers), timeout=30)
        for member in ("0", "1"):
            run = sweep / member
            said = [line for line in lines if f"trainer.resume={run} " in line]
            assert len(said) == 1 and said[0].startswith(
                "robustai train: error: interrupted at epoch "
            ), lines
            assert "checkpoint epoch-" in said[0] and " saved; resume the sweep" in said[0]
            assert "SIGTERM received: finishing the current step" in (run / "train.log").read_text()
            assert not (run / "metrics.json").exists()
            assert list((run / "checkpoints").glob("epoch-*.json"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in _alive(workers):  # what a failed run left behind
            os.kill(pid, signal.SIGKILL)


def test_a_finished_run_is_not_evaluated_over_with_other_settings(tmp_path: Path) -> None:
    """Started again in its folder, a finished run resumes its last checkpoint and evaluates
    again: with other evaluator settings its metrics.json and report were replaced by the new
    evaluation's. Refused, untouched; the same command goes through (an evaluation redone)."""
    run = tmp_path / "run"
    args = [*in_process_args(), f"hydra.run.dir={run}"]
    assert robustai(*args, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    done = robustai(*args, "evaluator.eps=[0.2]", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"hydra.run.dir={run} holds a finished run evaluated with other settings" in line
    assert "(evaluator.eps differ)" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert robustai(*args, cwd=tmp_path).returncode == 0
    assert "resumed from" in (run / "train.log").read_text()
    # the same settings in other words: compared as the run reads them, not as written
    same = ["attack.eps=1/10", "evaluator.eps=[0.1]", "evaluator=quick"]
    assert robustai(*args, *same, cwd=tmp_path).returncode == 0


def test_a_run_without_checkpoints_interrupted_once_is_not_trained_over_when_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trainer.checkpoint_every=0 keeps no checkpoints, but an interrupt saves one. Resumed
    and finished, the run kept that one as its newest: started again, it resumed from it and
    trained its last epoch over, replacing weights and metrics. The final state now replaces
    it as the newest, so started again the finished run only evaluates."""
    from robustai.training.callbacks import CheckpointCallback
    from robustai.training.checkpoint import list_checkpoints

    real = CheckpointCallback.on_epoch_end

    def ctrl_c_after_epoch_2(self, trainer, stats):  # type: ignore[no-untyped-def]
        real(self, trainer, stats)
        if trainer.epoch == 2:  # the run's handler stops it at its next step, with a checkpoint
            os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "run"
    args = [*in_process_args(epochs=3), "trainer.checkpoint_every=0", f"hydra.run.dir={run}"]
    with monkeypatch.context() as mp:
        mp.setattr(CheckpointCallback, "on_epoch_end", ctrl_c_after_epoch_2)
        assert robustai(*args, cwd=tmp_path).returncode == 130
    assert list_checkpoints(run / "checkpoints")[0].epoch == 2  # the interrupt's
    assert robustai(*args, cwd=tmp_path).returncode == 0
    assert list_checkpoints(run / "checkpoints")[0].epoch == 3
    weights = (run / "weights.safetensors").read_bytes()
    log = (run / "train.log").read_text()
    assert robustai(*args, cwd=tmp_path).returncode == 0  # evaluates again, trains nothing
    again = (run / "train.log").read_text()[len(log) :]
    assert "epoch 3/3" not in again and (run / "weights.safetensors").read_bytes() == weights
