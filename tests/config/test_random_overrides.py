"""Random overrides thrown at the config layer: every outcome is a completed run, exit 2 with a
one-line message, or (a combination that trains but diverges, e.g. FGSM at batch size 1) exit 1
with the one-line NaN message; never a traceback. Derandomized: the same examples every run, so
CI does not meet a new combination by chance."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustai.cli.main import main

CHOICES = {
    "trainer.epochs": ["1", "2", "0", "-1", "two", "1.5", ""],
    "data.batch_size": ["1", "16", "0", "-5", "big"],
    "attack": ["none", "fgsm", "fgsm_rs", "pgd", "pgd2"],
    "attack.eps": ["0", "0.05", "8/255", "1.5", "-0.1", "a/b", "1/0", "null"],
    "model": ["mlp", "small_cnn", "resnet"],
    "trainer.optimizer": ["sgd", "adam", "adamw"],
    "trainer.schedule": ["constant", "onecycle", "cyclic", "cosine"],
    "trainer.lr": ["0.01", "0.1", "0", "-1"],
    "evaluator.eps": ["[0.05,0.1]", "[]", "[2]", "[8/255]"],
    "trainer.watchdog.max_drop": ["0.2", "1.5"],
    "trainer.epoch": ["1"],
    "data.holdout": ["0.25", "0", "1"],
    "trainer.seed": ["0", "7", "x"],
    "data.eps": ["0.1", "2"],
    "trainer.momentum": ["0.9", "-0.5"],
}
overrides = st.lists(
    st.sampled_from(sorted(CHOICES)).flatmap(
        lambda key: st.sampled_from(CHOICES[key]).map(lambda value: f"{key}={value}")
    ),
    max_size=4,
    unique_by=lambda o: o.split("=")[0],
)
BASE = [
    "data=synthetic",
    "data.num_samples=96",
    "logger=none",
    "trainer.watchdog.samples=8",
    "trainer.progress=false",
    "trainer.checkpoint_every=0",
]


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(extra=overrides)
def test_random_overrides_end_in_a_run_or_exit_2(
    extra: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory() as tmp, monkeypatch.context() as m:
        # one folder per example, left (chdir undone) before it is removed
        run = Path(tmp) / "run"
        m.chdir(tmp)
        capsys.readouterr()
        try:
            code = main(["train", *BASE, *extra, f"hydra.run.dir={run}"])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        made_metrics = (run / "metrics.json").is_file()
    assert "Traceback" not in err
    if code == 0:
        assert made_metrics, (extra, err[-2000:])
    else:
        errors = [ln for ln in err.splitlines() if ln.startswith("robustai train: error: ")]
        assert len(errors) == 1, (extra, err[-2000:])
        diverged = code == 1 and "the loss became NaN or infinite" in errors[0]
        assert code == 2 or diverged, (extra, code, err[-2000:])
        assert not made_metrics
