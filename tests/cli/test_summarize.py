"""`robustai summarize` on sweep folders laid out as `robustai train -m` writes them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from robustai.cli.main import main
from robustai.cli.summarize import pareto_front, summarize


def make_run(
    root: Path,
    name: str,
    overrides: list[str],
    metrics: dict[str, Any] | None,
    config: dict[str, Any] | None = None,
    hydra: dict[str, Any] | None = None,
    failed: str | None = None,
) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config or {}))
    if hydra is not None:
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if failed is not None:
        (run / "status.json").write_text(json.dumps({"status": "failed", "error": failed}))
    return run


def metrics(clean: float, robust: float, eps: str = "0.1", **extra: Any) -> dict[str, Any]:
    return {
        "clean_acc": clean,
        "robust_acc": {f"fgsm@{eps}": robust + 0.05, f"pgd20@{eps}": robust},
        "worst_case_acc": {eps: robust},
        "wall_seconds": 1.5,
        "privacy": None,
        **extra,
    }


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def one_line_exit_2(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["summarize", *args])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("robustai summarize: error: ")
    return lines[0]


def test_missing_empty_or_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "no such folder" in one_line_exit_2(capsys, str(tmp_path / "nope"))
    assert "no runs found" in one_line_exit_2(capsys, str(tmp_path))
    (tmp_path / "file.txt").write_text("x")
    assert "file.txt is a file, not a folder; give a sweep folder" in one_line_exit_2(
        capsys, str(tmp_path / "file.txt")
    )
    make_run(tmp_path, "0", ["a=1"], metrics(0.9, 0.5))
    assert "not a metrics.json name" in one_line_exit_2(
        capsys, str(tmp_path), "--objective", "accuracy"
    )
    assert "required" in one_line_exit_2(capsys)
    # one run's folder: its tables and plot were written into the run, a member named "."
    run = tmp_path / "0"
    before = sorted(p.name for p in run.iterdir())
    assert f"{run} is one run's folder, not a folder of runs" in one_line_exit_2(capsys, str(run))
    assert sorted(p.name for p in run.iterdir()) == before
    # a name no member reports (here: another eps) ranked nothing and said nothing
    line = one_line_exit_2(capsys, str(tmp_path), "--objective", "robust_acc/pgd20@0.2")
    assert "--objective robust_acc/pgd20@0.2: no member reports it; the members report" in line
    assert "robust_acc/pgd20@0.1" in line


def test_statuses_sorting_and_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path, "0", ["attack.eps=0.1", "trainer.lr=0.1"], metrics(0.9, 0.4))
    make_run(tmp_path, "1", ["attack.eps=0.1", "trainer.lr=0.2"], None, failed="diverged")
    make_run(tmp_path, "2", ["attack.eps=0.1", "trainer.lr=0.3"], metrics(0.8, 0.6))
    make_run(tmp_path, "10", ["attack.eps=0.1", "trainer.lr=0.4"], None)  # killed: no record
    assert main(["summarize", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = rows(tmp_path)
    assert [(r["member"], r["status"]) for r in table] == [
        ("2", "ok"),
        ("0", "ok"),
        ("1", "failed"),
        ("10", "incomplete"),
    ]
    # Only the varying override is a column; values are metrics.json's, at full precision.
    assert "attack.eps" not in table[0] and table[0]["trainer.lr"] == "0.3"
    assert float(table[0]["clean_acc"]) == 0.8
    assert float(table[0]["robust_acc/fgsm@0.1"]) == 0.6 + 0.05
    assert float(table[0]["objective (worst_case_acc)"]) == 0.6
    assert table[2]["error"] == "diverged"
    assert "best member: 2 (trainer.lr=0.3) worst_case_acc = 0.6000" in out
    md = (tmp_path / "summary.md").read_text()
    assert "4 members: 2 ok, 1 failed, 1 incomplete" in md and "- 1: diverged" in md
    assert (tmp_path / "pareto.png").is_file()
    # Any metric can be the sort key, in either direction.
    ranked = summarize(tmp_path, "clean_acc", ascending=True).members
    assert [m.name for m in ranked[:2]] == ["2", "0"]
    ranked = summarize(tmp_path, "robust_acc/fgsm@0.1").members
    assert [m.name for m in ranked[:2]] == ["2", "0"]


def test_optuna_best_trial_is_matched_to_its_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hydra = {"sweeper": {"direction": "maximize"}}
    cfg = {"optimized_metric": "clean_acc"}
    make_run(tmp_path, "0", ["trainer.lr=0.05"], metrics(0.70, 0.3), cfg, hydra)
    make_run(tmp_path, "1", ["trainer.lr=0.123456789"], metrics(0.75, 0.3), cfg, hydra)
    make_run(tmp_path, "2", ["trainer.lr=0.123456789"], metrics(0.95, 0.1), cfg, hydra)
    (tmp_path / "optimization_results.yaml").write_text(
        yaml.safe_dump(
            {"name": "optuna", "best_params": {"trainer.lr": 0.123456789}, "best_value": 0.95}
        )
    )
    assert main(["summarize", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # Same parameters twice: the member whose objective is the reported best value.
    assert "Optuna best trial: member 2 (trainer.lr=0.123456789) value = 0.95" in out
    assert [r["member"] for r in rows(tmp_path)] == ["2", "1", "0"]  # sorted by clean_acc


def test_optuna_pareto_solutions_and_privacy_colour(tmp_path: Path) -> None:
    hydra = {"sweeper": {"direction": ["maximize", "maximize"]}}
    cfg = {"optimized_metric": ["clean_acc", "worst_case_acc"]}
    priv = {"epsilon": 3.0, "delta": 1e-5}
    make_run(tmp_path, "0", ["attack.eps=0.0"], metrics(0.95, 0.1, privacy=priv), cfg, hydra)
    make_run(tmp_path, "1", ["attack.eps=0.1"], metrics(0.85, 0.5, privacy=priv), cfg, hydra)
    make_run(tmp_path, "2", ["attack.eps=0.2"], metrics(0.80, 0.4), cfg, hydra)
    (tmp_path / "optimization_results.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "optuna",
                "solutions": [
                    {"params": {"attack.eps": 0.0}, "values": [0.95, 0.1]},
                    {"params": {"attack.eps": 0.1}, "values": [0.85, 0.5]},
                ],
            }
        )
    )
    s = summarize(tmp_path)
    assert s.optuna is not None
    assert [sol["member"].name for sol in s.optuna["solutions"]] == ["0", "1"]
    assert {m.name for m in s.members if m.pareto} == {"0", "1"}  # 2 is dominated by 1
    assert main(["summarize", str(tmp_path)]) == 0
    table = {r["member"]: r for r in rows(tmp_path)}
    assert float(table["0"]["privacy/epsilon"]) == 3.0 and table["2"]["privacy/epsilon"] == ""
    assert table["2"]["pareto"] == "false"


def test_member_without_a_worst_case_is_not_on_the_pareto_front(tmp_path: Path) -> None:
    """A run evaluated without attacks has worst_case_acc NaN: not a point to plot or rank."""
    make_run(tmp_path, "0", ["attack.eps=0.1"], metrics(0.85, 0.5))
    make_run(tmp_path, "1", ["evaluator.attacks=[]"], metrics(0.95, float("nan")))
    s = summarize(tmp_path)
    assert {m.name for m in s.members if m.pareto} == {"0"}
    assert main(["summarize", str(tmp_path)]) == 0
    assert {r["member"]: r["pareto"] for r in rows(tmp_path)} == {"0": "true", "1": "false"}


def test_a_front_of_one_member_is_drawn(tmp_path: Path) -> None:
    """One member dominating the rest is a front of one point: a line without markers drew
    nothing red, under a title saying the front is red."""
    from robustai.cli.summarize import pareto_figure

    make_run(tmp_path, "0", ["attack.eps=0.1"], metrics(0.9, 0.7))
    make_run(tmp_path, "1", ["attack.eps=0.2"], metrics(0.8, 0.5))
    fig = pareto_figure(summarize(tmp_path))
    (front,) = [line for line in fig.axes[0].get_lines() if line.get_color() == "tab:red"]
    assert list(front.get_xdata()) == [0.9] and list(front.get_ydata()) == [0.7]
    assert front.get_marker() == "o"


def test_a_note_is_printed_once(tmp_path: Path) -> None:
    """Each note came out twice from the shell: as "note: ..." on stdout, and again on stderr
    through Python's fallback log handler (the command configures no logging)."""
    import subprocess
    import sys

    make_run(tmp_path / "a", "0", ["attack.eps=0.05"], metrics(0.9, 0.7, eps="0.05"))
    make_run(tmp_path / "a", "1", ["attack.eps=0.1"], metrics(0.9, 0.5, eps="0.1"))
    done = subprocess.run(
        [sys.executable, "-m", "robustai", "summarize", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("members were evaluated at different eps") == 1
    assert "different eps" not in done.stderr


def test_a_ranking_across_different_eps_says_it_mixes_threat_models(tmp_path: Path) -> None:
    """A sweep over attack.eps evaluates each member at its own eps: the smaller eps wins
    worst_case_acc by construction, and the summary says so; at one eps it says nothing."""
    make_run(tmp_path / "a", "0", ["attack.eps=0.05"], metrics(0.9, 0.7, eps="0.05"))
    make_run(tmp_path / "a", "1", ["attack.eps=0.1"], metrics(0.9, 0.5, eps="0.1"))
    assert main(["summarize", str(tmp_path / "a")]) == 0
    text = (tmp_path / "a" / "summary.md").read_text()
    assert "note: members were evaluated at different eps (0.05, 0.1)" in text
    assert "worst_case_acc and the Pareto front compare" in text
    # Another objective ranks correctly; only the Pareto front (each member's first eps) mixes.
    for objective in ("worst_case_acc/0.1", "clean_acc"):
        (note,) = summarize(tmp_path / "a", objective).notes
        assert note.startswith("members were evaluated at different eps (0.05, 0.1): the Pareto")
        assert objective not in note
    make_run(tmp_path / "b", "0", ["trainer.lr=0.1"], metrics(0.9, 0.7))
    make_run(tmp_path / "b", "1", ["trainer.lr=0.2"], metrics(0.9, 0.5))
    assert summarize(tmp_path / "b").notes == []


points = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=12)


@settings(deadline=None)  # as elsewhere in the suite: a busy CI core must not fail a property
@given(points)
def test_pareto_front_is_exactly_the_undominated_points(pts: list[tuple[float, float]]) -> None:
    front = set(pareto_front(pts))
    assert front
    for i, (x, y) in enumerate(pts):
        beaten = any(a >= x and b >= y and (a, b) != (x, y) for a, b in pts)
        assert (i in front) == (not beaten)


def test_a_member_with_unreadable_records_is_listed_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A half-written or edited member (broken YAML, metrics.json that is not an object) is one
    failed row saying which file; the other members are summarized as usual."""
    make_run(tmp_path, "0", ["trainer.lr=0.1"], metrics(0.9, 0.4))
    make_run(tmp_path, "1", ["trainer.lr=0.2"], metrics(0.8, 0.5))
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text("[[[")
    make_run(tmp_path, "2", ["trainer.lr=0.3"], metrics(0.7, 0.3))
    (tmp_path / "2" / "metrics.json").write_text("[1, 2]")
    make_run(tmp_path, "3", ["trainer.lr=0.4"], metrics(0.7, 0.3))
    (tmp_path / "3" / ".hydra" / "config.yaml").write_text("- just\n- a list\n")
    make_run(tmp_path, "4", [], metrics(0.6, 0.2))
    (tmp_path / "4" / ".hydra" / "overrides.yaml").write_text("")  # nothing recorded: fine
    (tmp_path / "optimization_results.yaml").write_text("best_params: [")
    assert main(["summarize", str(tmp_path)]) == 0
    table = {r["member"]: r for r in rows(tmp_path)}
    assert table["0"]["status"] == "ok"
    assert table["1"]["status"] == "failed" and "overrides.yaml" in table["1"]["error"]
    assert table["2"]["status"] == "failed" and "metrics.json" in table["2"]["error"]
    assert table["3"]["status"] == "failed" and "config.yaml" in table["3"]["error"]
    assert table["4"]["status"] == "ok"
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    # the terminal says why as well, not only summary.md / summary.csv
    assert f"failed 2: {table['2']['error']}" in out.splitlines()


def test_records_of_the_wrong_shape_are_failed_rows_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid JSON / YAML that is not what robustai writes (edited by hand, another tool's)."""
    make_run(tmp_path, "0", ["trainer.lr=0.1"], metrics(0.9, 0.4))
    bad = {
        "1": {"worst_case_acc": {"0.1": 0.3}},  # no clean_acc
        "2": {"clean_acc": None, "worst_case_acc": {"0.1": 0.3}},
        "3": {"clean_acc": 0.8, "worst_case_acc": {"eps": 0.3}},  # a key that is no eps
        "4": {"clean_acc": 0.8, "worst_case_acc": [0.3]},
    }
    for name, record in bad.items():
        make_run(tmp_path, name, [f"trainer.lr=0.{name}"], record)
    make_run(tmp_path, "5", ["trainer.lr=0.5"], metrics(0.7, 0.3))
    (tmp_path / "5" / "status.json").write_text('"failed"')  # JSON, but not an object
    (tmp_path / "optimization_results.yaml").write_text("best_params:\nbest_value: 0.9\n")
    assert main(["summarize", str(tmp_path)]) == 0
    table = {r["member"]: r for r in rows(tmp_path)}
    assert table["0"]["status"] == "ok"
    for name in ("1", "2", "3", "4"):
        assert table[name]["status"] == "failed" and "metrics.json" in table[name]["error"]
    assert table["5"]["status"] == "failed" and "status.json" in table["5"]["error"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_config_robustai_did_not_write_is_a_failed_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An optimized_metric that is no name (null, a number) and a sweeper direction that no
    longer resolves were tracebacks; the member is a failed row naming its file."""
    make_run(tmp_path, "0", ["trainer.lr=0.1"], metrics(0.9, 0.4))
    for name, objective in (("1", None), ("2", 5)):
        config = {"optimized_metric": objective}
        make_run(tmp_path, name, [f"trainer.lr=0.{name}"], metrics(0.8, 0.5), config=config)
    hydra = {"sweeper": {"direction": "${nope}"}}
    make_run(tmp_path, "3", ["trainer.lr=0.4"], metrics(0.7, 0.3), hydra=hydra)
    assert main(["summarize", str(tmp_path), "--no-plot"]) == 0
    table = {r["member"]: r for r in rows(tmp_path)}
    assert table["0"]["status"] == "ok"
    for name in ("1", "2"):
        assert table[name]["status"] == "failed"
        assert "config.yaml: optimized_metric is not a metric name" in table[name]["error"]
    assert table["3"]["status"] == "failed" and "hydra.yaml" in table["3"]["error"]
    assert "Traceback" not in capsys.readouterr().err


def test_nan_objectives_name_no_best_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Members evaluated without attacks have worst_case_acc NaN: finished, but nothing to
    rank or plot, and the summary says that rather than crowning a NaN."""
    for name in ("0", "1"):
        make_run(tmp_path, name, [f"trainer.lr=0.{name}"], metrics(0.9, float("nan")))
    assert main(["summarize", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best member" not in out
    assert {r["status"] for r in rows(tmp_path)} == {"ok"}
    assert summarize(tmp_path).best is None


def test_lower_is_better_for_privacy_epsilon_without_a_sweeper_direction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grid sweep (no Optuna direction) over DP-SGD noise with optimized_metric=privacy/epsilon:
    the best member is the one that spends the least epsilon, not the most."""
    config = {"optimized_metric": "privacy/epsilon"}
    for name, (noise, eps) in enumerate([(0.5, 9.0), (1.0, 4.0), (2.0, 1.5)]):
        m = metrics(0.9, 0.5, privacy={"epsilon": eps, "delta": 1e-5}, train_seconds=name + 1)
        make_run(tmp_path, str(name), [f"privacy.noise_multiplier={noise}"], m, config=config)
    assert main(["summarize", str(tmp_path), "--no-plot"]) == 0
    assert "best member: 2 (privacy.noise_multiplier=2.0) privacy/epsilon = 1.5000" in (
        capsys.readouterr().out
    )
    assert [m.name for m in summarize(tmp_path).members] == ["2", "1", "0"]
    assert [m.name for m in summarize(tmp_path, "privacy/epsilon").members] == ["2", "1", "0"]
    assert [m.name for m in summarize(tmp_path, "train_seconds").members] == ["0", "1", "2"]


def test_epsilon_as_the_objective_is_rounded_up_as_in_its_own_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The privacy/epsilon column read 3.8970 and the objective column and the best member's
    line 3.8969 for an epsilon of 3.896944...: less than was proved."""
    config = {"optimized_metric": "privacy/epsilon"}
    m = metrics(0.9, 0.5, privacy={"epsilon": 3.896944877, "delta": 1e-5})
    make_run(tmp_path, "0", ["privacy.noise_multiplier=1.0"], m, config=config)
    assert main(["summarize", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "privacy/epsilon = 3.8970" in out and "3.8969" not in out
    assert "3.8969" not in (tmp_path / "summary.md").read_text()


def test_an_evaluate_sweep_member_shows_its_seconds(tmp_path: Path) -> None:
    """A `robustai evaluate -m` member leaves report.json (eval_seconds, no wall_seconds): its
    seconds column is filled from that, not left blank."""
    for name, clean in (("0", 0.9), ("1", 0.8)):
        run = make_run(tmp_path, name, [f"evaluator.samples={name}"], None)
        report = metrics(clean, 0.5)
        del report["wall_seconds"]
        (run / "report.json").write_text(json.dumps({**report, "eval_seconds": 2.5}))
    assert main(["summarize", str(tmp_path), "--no-plot"]) == 0
    assert [float(r["seconds"]) for r in rows(tmp_path)] == [2.5, 2.5]


def test_a_folder_of_two_sweeps_ranks_by_one_objective_in_its_own_direction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grid sweep (worst_case_acc) beside an Optuna sweep minimizing privacy/epsilon: the
    objective came from one sweep and the direction from the other, so the lowest accuracy
    was named best, without a word."""
    grid = {"optimized_metric": "worst_case_acc"}
    make_run(tmp_path / "a", "0", ["trainer.lr=0.05"], metrics(0.9, 0.20), grid)
    make_run(tmp_path / "a", "1", ["trainer.lr=0.2"], metrics(0.9, 0.33), grid)
    optuna = {"sweeper": {"direction": "minimize"}}
    dp = {"optimized_metric": "privacy/epsilon"}
    for i, (robust, eps) in enumerate([(0.06, 2.0), (0.1, 4.0)]):
        m = metrics(0.5, robust, privacy={"epsilon": eps, "delta": 1e-5})
        make_run(tmp_path / "b", str(i), [f"privacy.noise_multiplier={i}"], m, dp, optuna)
    summary = summarize(tmp_path)
    assert summary.objective == "worst_case_acc" and summary.maximize
    assert summary.members[0].name == "a/1"
    assert any("other objectives (privacy/epsilon)" in n for n in summary.notes)
    assert summarize(tmp_path / "b").maximize is False  # each sweep alone: its own direction
    line = one_line_exit_2(capsys, str(tmp_path / "a"), "--objective", "privacy/epsilon")
    assert "and clean_acc" in line and "privacy/epsilon, ..." not in line


def test_a_delta_and_an_epsilon_are_shown_rounded_up_never_smaller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1.2345e-4 read 0.000123 at 3 significant digits, and epsilon 2.99404 read 2.9940 at four
    decimals: stronger guarantees than were proved; shown rounded up (as the privacy statement
    shows them), and kept exact in summary.csv."""
    dpsgd = {"epsilon": 2.99404, "delta": 1.2345e-4, "adjacency": "add/remove one record"}
    make_run(tmp_path, "0", ["trainer.lr=0.1"], metrics(0.4, 0.2, privacy=dpsgd))
    make_run(tmp_path, "1", ["trainer.lr=0.2"], metrics(0.5, 0.3, privacy=dpsgd))
    assert main(["summarize", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    md = (tmp_path / "summary.md").read_text()
    for text in (out, md):
        assert "0.000124" in text and "0.000123" not in text
        assert "2.9941" in text and "2.9940" not in text
    assert {float(r["privacy/delta"]) for r in rows(tmp_path)} == {1.2345e-4}
    assert {float(r["privacy/epsilon"]) for r in rows(tmp_path)} == {2.99404}


def test_a_folder_it_cannot_write_to_still_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only or shared sweep folder was a traceback (here: summary.csv is a folder)."""
    make_run(tmp_path, "0", ["trainer.lr=0.05"], metrics(0.9, 0.5))
    (tmp_path / "summary.csv").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["summarize", str(tmp_path), "--no-plot"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert "best member: 0" in out
    (line,) = err.strip().splitlines()
    assert line.startswith("robustai summarize: error: cannot write the summary files into ")


def test_epsilons_at_other_deltas_or_adjacency_show_delta_and_say_they_do_not_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An epsilon holds at one delta for one adjacency: the table shows the delta beside it,
    and members that differ in either get a note that their epsilons are not comparable."""
    dpsgd = {"epsilon": 2.3, "delta": 1e-5, "adjacency": "add/remove one record"}
    make_run(tmp_path / "a", "0", ["privacy.delta=1e-5"], metrics(0.4, 0.2, privacy=dpsgd))
    looser = {**dpsgd, "epsilon": 1.5, "delta": 5e-4}
    make_run(tmp_path / "a", "1", ["privacy.delta=5e-4"], metrics(0.5, 0.3, privacy=looser))
    assert main(["summarize", str(tmp_path / "a"), "--objective", "privacy/epsilon"]) == 0
    out = capsys.readouterr().out
    table = {r["member"]: r for r in rows(tmp_path / "a")}
    assert float(table["0"]["privacy/delta"]) == 1e-5 and float(table["1"]["privacy/delta"]) == 5e-4
    header = out.splitlines()[0].split()
    assert header.index("privacy/delta") == header.index("privacy/epsilon") + 1
    assert "1e-05" in out  # not rounded away to 0.0000
    md = (tmp_path / "a" / "summary.md").read_text()
    for text in (out, md):
        assert "note: members report privacy/epsilon at different delta (1e-05, 0.0005)" in text
        assert "not comparable" in text
    # DP-SGD's add/remove beside an input mechanism's replace-one, at one delta
    mechanism = {"epsilon": 4.0, "delta": 1e-5, "adjacency": "replace one record"}
    make_run(tmp_path / "b", "0", ["privacy=dpsgd"], metrics(0.4, 0.2, privacy=dpsgd))
    make_run(tmp_path / "b", "1", ["privacy=input_gaussian"], metrics(0.5, 0.3, privacy=mechanism))
    (note,) = summarize(tmp_path / "b").notes
    assert "different adjacency (add/remove one record; replace one record)" in note
    assert "not comparable" in note
    # one delta, one adjacency: the column, and no note
    make_run(tmp_path / "c", "0", ["trainer.lr=0.1"], metrics(0.4, 0.2, privacy=dpsgd))
    make_run(tmp_path / "c", "1", ["trainer.lr=0.2"], metrics(0.5, 0.3, privacy=dpsgd))
    summary = summarize(tmp_path / "c")
    assert summary.notes == [] and "privacy/delta" in summary.metric_columns


def test_evaluations_beside_the_runs_they_measured_are_left_out_with_a_note(
    tmp_path: Path,
) -> None:
    """An experiment's folder holds its runs and, under evaluate/, evaluations of their models
    (robustai evaluate puts them there): ranked together, a 20-sample re-measurement with clean
    accuracy 1.0 was the best member and the run it measured fell off the Pareto front."""
    from robustai.cli.summarize import summarize

    train = {"job": {"name": "train"}}
    make_run(tmp_path, "2026-01-01/00-00-00", [], metrics(0.95, 0.8), hydra=train)
    make_run(tmp_path, "2026-01-02/00-00-00", [], metrics(0.9, 0.7), hydra=train)
    evaluate = {"job": {"name": "evaluate"}}
    for name in ("a", "b"):
        run = make_run(tmp_path, f"evaluate/2026-01-03/{name}", [], None, hydra=evaluate)
        (run / "report.json").write_text(json.dumps(metrics(1.0, 0.99)))
    summary = summarize(tmp_path)
    assert [m.name for m in summary.members] == ["2026-01-01/00-00-00", "2026-01-02/00-00-00"]
    assert summary.notes[0] == (
        f"2 evaluations (robustai evaluate) below {tmp_path} left out: they measure the models of"
        f" these runs again; summarize them on their own: robustai summarize"
        f" {tmp_path / 'evaluate' / '2026-01-03'}"
    )
    # on their own (or an evaluation sweep) they are the members
    assert len(summarize(tmp_path / "evaluate").members) == 2
    shutil.rmtree(tmp_path / "evaluate" / "2026-01-03" / "b")
    assert summarize(tmp_path).notes[0].startswith(
        f"1 evaluation (robustai evaluate) below {tmp_path} left out: it measures a model of"
    )
