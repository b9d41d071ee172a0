"""``privacy=...`` through the config and the training pipeline: every option composes and runs,
DP-SGD runs write their budget where the contract says, and bad settings fail in one line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from inprocess import robustai
from opacus.accountants import PRVAccountant
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robustai.cli.common import config_dir
from robustai.cli.pipeline import run_train
from robustai.cli.preflight import preflight
from robustai.config import TrainConfig, to_train_config
from robustai.data import build_data
from robustai.errors import ConfigError
from robustai.models import load_model
from robustai.privacy import build_privacy, privacy_section
from robustai.training import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

CONFIGS = config_dir()
OPTIONS = sorted(p.stem for p in (CONFIGS / "privacy").glob("*.yaml"))
# Small and quick: 256 digits, 2 epochs, a short evaluation, no TensorBoard images.
TINY = [
    "data.train_size=256",
    "data.batch_size=32",
    "trainer.epochs=2",
    "trainer.progress=false",
    "trainer.watchdog.samples=32",
    "trainer.watchdog.steps=2",
    "trainer.checkpoint_every=0",
    "evaluator.samples=64",
    "logger.image_grid=0",
]


def compose(overrides: list[str]) -> TrainConfig:
    out: list[TrainConfig] = []
    preflight(CONFIGS, "train", overrides, lambda cfg: out.append(to_train_config(cfg)))
    assert len(out) == 1
    return out[0]


def train(overrides: list[str], out_dir: Path) -> dict[str, Any]:
    return run_train(compose([*TINY, *overrides]), out_dir)


def test_the_options_are_the_documented_ones() -> None:
    assert {"none", "dpsgd", "input_laplace", "input_gaussian", "gaussian_noise"} <= set(OPTIONS)
    assert compose([]).privacy.name == "none"


@pytest.mark.parametrize("option", [o for o in OPTIONS if o != "dpsgd"])
def test_each_option_runs(option: str, tmp_path: Path) -> None:
    m = train([f"privacy={option}", "attack=none", "trainer.epochs=1"], tmp_path)
    assert m["privacy_statement"]
    if option in ("none", "gaussian_noise"):
        assert m["privacy"] is None
    else:
        assert m["privacy"]["epsilon"] > 0 and m["privacy"]["where"] == "input"
        assert m["privacy"]["num_samples"] == 256
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert ("privacy" in meta) and (meta["privacy"] is None) == (option == "none")


def test_a_query_mechanism_reports_no_training_data_guarantee_and_evaluates_as_trained(
    tmp_path: Path,
) -> None:
    """privacy.where=output protects each query's logits, not the training data: metrics.json's
    privacy is null (sweeps compare it with DP-SGD's epsilon) and query_privacy holds the
    mechanism's accounting. load_model (and so robustai evaluate) puts the mechanism back into
    the saved model, as the run evaluated it: with this much noise on the logits (scale 1600)
    both are near chance, while the weights alone classify well."""
    from robustai.cli.evaluate import run_evaluate
    from robustai.config import to_evaluate_config
    from robustai.evaluation import accuracy

    run = tmp_path / "run"
    opts = ["privacy=input_laplace", "privacy.where=output", "privacy.epsilon=0.01"]
    m = train([*opts, "attack=none", "trainer.epochs=3", "data.train_size=null"], run)
    assert m["privacy"] is None
    q = m["query_privacy"]
    assert (q["where"], q["epsilon"], q["noise_scale"]) == ("output", 0.01, 1600.0)
    assert "does not protect the training data" in m["privacy_statement"]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["privacy"]["where"] == "output"  # what evaluate needs to rebuild it
    data = build_data("digits")
    model, _ = load_model(run)  # as the run evaluated it, mechanism included
    assert accuracy(model, data.eval.x, data.eval.y) < 0.3
    model, _ = load_model(run, query_mechanism=False)
    assert accuracy(model, data.eval.x, data.eval.y) > 0.5  # the weights alone
    assert m["clean_acc"] < 0.3
    cfg = to_evaluate_config(
        {
            "checkpoint": str(run),
            "evaluator": {"eps": [0.1], "attacks": [], "sanity": {"enabled": False},
                          "curve": {"enabled": False}},
            "logger": {"tensorboard": False},
        }
    )
    report = run_evaluate(cfg, tmp_path / "eval")
    assert report["clean_acc"] < 0.3
    # the evaluation's report says what the evaluated model guarantees, as the training's did
    assert report["privacy_statement"] == m["privacy_statement"]
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "## Privacy" in md and "does not protect the training data" in md


def test_a_query_mechanism_run_is_evaluated_with_eot(tmp_path: Path) -> None:
    """Noise on the features makes every forward pass a draw: evaluator=rand (AutoAttack's
    "rand" suite, shortened here) averages each gradient over eot_iter passes, and the sanity
    checks accept the randomized model as evaluated with EOT."""
    opts = ["privacy=input_laplace", "privacy.where=features", "privacy.epsilon=64"]
    suite = ["evaluator=rand", "evaluator.eot_iter=4", "evaluator.curve.enabled=false"]
    suite += ["evaluator.attacks.0.steps=5", "evaluator.attacks.1.steps=5"]
    m = train([*opts, *suite, "attack=none", "logger.image_grid=4"], tmp_path)
    assert list(m["robust_acc"]) == ["apgd_ce_eot4@0.1", "apgd_dlr_eot4@0.1"]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "eval/adversarial/apgd_dlr_eot4@0.1" in events.Tags()["images"]  # the grid's too
    checks = m["sanity"]["checks"]
    assert checks["deterministic"]["status"] == "pass", checks["deterministic"]["reason"]
    assert checks["deterministic"]["eot_iter"] == 4
    assert checks["deterministic"]["max_logit_change"] > 0  # it is randomized
    # without EOT the same run is told how to evaluate it
    m = train([*opts, "attack=none", "evaluator.curve.enabled=false"], tmp_path / "plain")
    assert m["sanity"]["checks"]["deterministic"]["status"] == "fail"
    assert "eot_iter" in m["sanity"]["checks"]["deterministic"]["reason"]


@pytest.fixture(scope="module")
def dp_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The same DP-SGD run without and with FGSM-RS adversarial training."""
    runs = {}
    for attack in ("none", "fgsm_rs"):
        out = tmp_path_factory.mktemp(f"dp_{attack}")
        dp = ["privacy=dpsgd", f"attack={attack}", "data.train_size=null", "data.batch_size=64"]
        dp.append("privacy.noise_seed=0")  # a reproducible outcome for the accuracy check
        runs[attack] = (out, train([*dp, "trainer.epochs=4"], out))
    return runs


@pytest.mark.parametrize("attack", ["none", "fgsm_rs"])
def test_dpsgd_run_reports_opacus_epsilon(attack: str, dp_runs: dict) -> None:
    out, m = dp_runs[attack]
    p = m["privacy"]
    n = 1438  # digits' training split
    q, steps = 64 / n, 4 * math.ceil(n / 64)
    assert (p["sample_rate"], p["steps"], p["noise_multiplier"]) == (q, steps, 1.0)
    acc = PRVAccountant()
    acc.history = [(1.0, q, steps)]
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5))
    assert p["delta"] == 1e-5 < 1 / n
    assert m["privacy_statement"] == p["statement"]
    stated = re.search(r"\(([0-9.e+-]+), 1e-05\)-differentially private", p["statement"])
    assert stated is not None  # 3 significant figures, rounded up: never more than proved
    assert p["epsilon"] <= float(stated[1]) <= p["epsilon"] * 1.01
    assert m["clean_acc"] > 0.3  # it trains (chance is 0.1; 0.39-0.75 over noise seeds 1-30)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["privacy"]["epsilon"] == p["epsilon"]
    assert meta["normalization"] == {"mean": [0.0], "std": [1.0]}  # not the data's statistics
    model, _ = load_model(out)  # a plain model: Opacus' wrapper is gone from the weights
    assert not any(k.startswith("_module") for k in model.state_dict())
    events = EventAccumulator(str(out))
    events.Reload()
    eps = [e.value for e in events.Scalars("privacy/epsilon")]
    assert len(eps) == 4 and eps == sorted(eps) and eps[-1] == pytest.approx(p["epsilon"])


def test_dpsgd_run_states_its_guarantee_in_every_copy_of_the_report(dp_runs: dict) -> None:
    """report.md, report.json and TensorBoard's ``eval/report`` text carry the same Privacy
    section: the report is rendered with it, not given it afterwards in report.md alone."""
    out, m = dp_runs["none"]
    report = json.loads((out / "report.json").read_text())
    assert report["privacy_statement"] == m["privacy_statement"]
    assert report["privacy"]["epsilon"] == m["privacy"]["epsilon"]  # as `robustai evaluate`'s
    section = privacy_section(m)
    md = (out / "report.md").read_text()
    assert md.endswith("\n\n" + section) and md.count("## Privacy") == 1
    events = EventAccumulator(str(out), size_guidance={"tensors": 0})
    events.Reload()
    (tag,) = [t for t in events.Tags()["tensors"] if t.startswith("eval/report")]
    (text,) = [e.tensor_proto.string_val[0].decode() for e in events.Tensors(tag)]
    assert text == md


def test_adversarial_dp_run_spends_what_the_clean_dp_run_spends(dp_runs: dict) -> None:
    clean, adv = dp_runs["none"][1]["privacy"], dp_runs["fgsm_rs"][1]["privacy"]
    assert adv["steps"] == clean["steps"]
    assert adv["epsilon"] == clean["epsilon"]
    # DP-SGD may not look at training records outside the accountant: the watchdog watches
    # eval images there, and says so
    out, m = dp_runs["fgsm_rs"]
    assert m["watchdog"]["split"] == "eval"
    events = EventAccumulator(str(out))
    events.Reload()
    label = m["watchdog"]["attack"]  # pgd2 here (trainer.watchdog.steps=2)
    assert f"val/robust_acc/{label}" in events.Tags()["scalars"]
    assert f"train/robust_acc/{label}" not in events.Tags()["scalars"]


def test_max_epsilon_stops_the_run_and_says_so(tmp_path: Path) -> None:
    m = train(
        ["privacy=dpsgd", "attack=none", "trainer.epochs=4", "privacy.max_epsilon=4.5"], tmp_path
    )
    # Epsilon after 1, 2, 3 epochs: 3.18, 4.03, 4.69; so the third epoch never starts.
    assert m["stopped_early"] and "privacy.max_epsilon=4.5" in m["stop_reason"]
    assert m["privacy"]["stopped_by_budget"] and m["privacy"]["epsilon"] <= 4.5
    assert m["epochs"] == 2


def test_target_epsilon_run_does_not_overshoot(tmp_path: Path) -> None:
    m = train(
        [
            "privacy=dpsgd",
            "attack=none",
            "privacy.noise_multiplier=null",
            "privacy.target_epsilon=4",
        ],
        tmp_path,
    )
    assert 3.9 <= m["privacy"]["epsilon"] <= 4.0


def test_batchnorm_model_refused_or_fixed(tmp_path: Path) -> None:
    bn = ["privacy=dpsgd", "attack=none", "model=preact_resnet18", "model.params.width=4"]
    with pytest.raises(ConfigError, match=r"'1\.layers\.0\.bn1' is BatchNorm2d.*fix_model=true"):
        train(bn, tmp_path / "refused")
    m = train([*bn, "privacy.fix_model=true", "trainer.epochs=1"], tmp_path / "fixed")
    assert m["privacy"]["model_fixed"][0] == "1.layers.0.bn1"
    model, _ = load_model(tmp_path / "fixed")  # rebuilt with GroupNorm, as trained
    assert "GroupNorm" in repr(model) and "BatchNorm" not in repr(model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["privacy=dpsgd", "privacy.target_epsilon=3"], "both set"),
        (["privacy=dpsgd", "privacy.noise_multiplier=null"], "noise_multiplier or"),
        (["privacy=dpsgd", "privacy.accountant=gdp"], "valid: prv, rdp"),
        (["privacy=dpsgd", "privacy.delta=2"], "privacy.delta"),
        (["privacy=input_laplace", "privacy.epsilon=null"], "needs privacy.epsilon"),
        (["privacy=input_gaussian", "privacy.where=logits"], "input, features, output"),
        (["privacy.name=dp"], "valid: none, dpsgd"),
        (["privacy=dpsg"], "did you mean dpsgd"),
    ],
)
def test_bad_privacy_settings_fail_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        compose(overrides)
    assert "\n" not in str(err.value)


def test_resumed_dp_run_keeps_its_accountant(tmp_path: Path) -> None:
    args = [a for a in TINY if not a.startswith("trainer.checkpoint_every")]
    dp = ["privacy=dpsgd", "attack=none", "trainer.checkpoint_every=1"]
    first = run_train(compose([*args, *dp]), tmp_path / "a")
    state = json.loads((tmp_path / "a" / "checkpoints" / "epoch-0002.json").read_text())
    assert state["state"]["privacy"]["__dict__"]["history"] == [[1.0, 32 / 256, 16]]
    assert "generator" not in json.dumps(state["state"]["loader"])  # no sampling RNG on disk
    removed = list((tmp_path / "a" / "checkpoints").glob("epoch-0002.*"))
    assert removed
    for f in removed:
        f.unlink()  # continue from the end of epoch 1: epoch 2's steps add to the restored ones
    again = run_train(compose([*args, *dp, f"trainer.resume={tmp_path / 'a'}"]), tmp_path / "b")
    assert again["privacy"]["steps"] == first["privacy"]["steps"] == 16
    assert again["privacy"]["epsilon"] == first["privacy"]["epsilon"]


@pytest.mark.parametrize("option", ["input_laplace", "input_gaussian"])
def test_resumed_input_mechanism_run_trains_on_the_one_release(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each training image is released once: a resumed run must go on with the images the
    checkpointed run trained on, not draw a second release (which would spend the budget twice)."""
    trained_on = []
    fit = Trainer.fit

    def spy(self: Trainer, loader: Any) -> Any:
        trained_on.append(loader.x.detach().clone())
        return fit(self, loader)

    monkeypatch.setattr(Trainer, "fit", spy)
    args = [a for a in TINY if not a.startswith("trainer.checkpoint_every")]
    opts = [f"privacy={option}", "attack=none", "trainer.checkpoint_every=1"]
    first = run_train(compose([*args, *opts]), tmp_path / "a")
    # the release is the size of the training set: the checkpoints share one copy of it
    assert len(list((tmp_path / "a" / "checkpoints").glob("shared-privacy-*"))) == 1
    removed = list((tmp_path / "a" / "checkpoints").glob("epoch-0002.*"))
    assert removed
    for f in removed:
        f.unlink()  # continue from the end of epoch 1
    again = run_train(compose([*args, *opts, f"trainer.resume={tmp_path / 'a'}"]), tmp_path / "b")
    assert len(trained_on) == 2
    assert torch.equal(trained_on[0], trained_on[1])
    assert again["privacy"]["epsilon"] == first["privacy"]["epsilon"]
    meta = [json.loads((tmp_path / r / "meta.json").read_text()) for r in "ab"]
    assert meta[0]["normalization"] == meta[1]["normalization"]  # of the one release
    # A checkpoint without the release (an older one) cannot be continued without a second.
    ckpt = tmp_path / "a" / "checkpoints" / "epoch-0001.json"
    payload = json.loads(ckpt.read_text())
    del payload["state"]["privacy"]
    ckpt.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="does not hold the released training images"):
        run_train(compose([*args, *opts, f"trainer.resume={tmp_path / 'a'}"]), tmp_path / "c")


def test_a_checkpointed_release_replaces_a_fresh_one_in_place() -> None:
    """In Python, a plan may load its state after prepare_data: the fresh release gives way to
    the checkpoint's everywhere, views of the training inputs included."""
    first, second = build_privacy("laplace", epsilon=32.0), build_privacy("laplace", epsilon=32.0)
    a, b = build_data("digits", train_size=64), build_data("digits", train_size=64)
    first.prepare_data(a)
    second.prepare_data(b)
    view = b.train.x[:8]
    assert not torch.equal(a.train.x, b.train.x)  # two releases differ
    second.load_state_dict(first.state_dict())
    assert torch.equal(b.train.x, a.train.x) and torch.equal(view, a.train.x[:8])
    assert (b.mean, b.std) == (a.mean, a.std)
    assert build_privacy("laplace", epsilon=32.0, where="output").state_dict() == {"released": None}


def test_build_privacy_refuses_a_keyword_no_option_takes() -> None:
    """Another option's keywords are dropped (the CLI passes every privacy field); a misspelled
    one used to be dropped too, silently losing e.g. the budget max_epsilon."""
    with pytest.raises(TypeError, match=r"'max_epslion' \(did you mean 'max_epsilon'\?\)"):
        build_privacy("dpsgd", noise_multiplier=1.0, max_epslion=2.0)
    with pytest.raises(TypeError, match=r"'sensitvity' \(did you mean 'sensitivity'\?\)"):
        build_privacy("laplace", epsilon=1.0, sensitvity=0.1)
    plan = build_privacy("laplace", epsilon=1.0, sigma=0.2, noise_multiplier=1.0)
    assert plan.statement() == build_privacy("laplace", epsilon=1.0).statement()


def test_delta_above_one_over_n_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"privacy=dpsgd: delta=0\.01 must be in \(0, 1/N\)"):
        train(["privacy=dpsgd", "privacy.delta=0.01"], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["none", "fgsm_rs"])
def test_cli_dpsgd_on_the_real_mnist_test_split(
    attack: str, mnist_idx_dir: Path, tmp_path: Path
) -> None:
    """``robustai train privacy=dpsgd [attack=fgsm_rs] data=idx`` on the 10k MNIST test images."""
    # Adversarial training under DP starts slower: 3 epochs, the first ramping eps up from 0.
    extra = ["trainer.epochs=1"]
    if attack != "none":
        extra = ["trainer.epochs=3", "trainer.eps_warmup_epochs=1"]
    epochs = 1 if attack == "none" else 3
    proc = robustai(
        "train",
        "privacy=dpsgd",
        f"attack={attack}",
        "attack.eps=0.1",  # DP-SGD + FGSM-RS at MNIST's customary 0.3 needs many epochs
        "data=idx",
        f"data.root={mnist_idx_dir}",
        *extra,
        "privacy.noise_seed=1",  # reproducible outcome (no privacy in practice: a test)
        "trainer.progress=false",
        "trainer.threads=1",
        "evaluator.samples=500",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    p = m["privacy"]
    steps = 80 * epochs
    assert p["num_samples"] == 8000 and p["steps"] == steps and p["sample_rate"] == 100 / 8000
    acc = PRVAccountant()
    acc.history = [(1.0, 100 / 8000, steps)]
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5))
    log = (tmp_path / "run" / "train.log").read_text()
    assert "privacy: epsilon" in log and p["statement"] in log
    assert m["clean_acc"] > 0.5


def test_a_dpsgd_run_that_diverges_names_the_noise(tmp_path: Path) -> None:
    """Noise multiplier 1e10 made the loss NaN, and the line said only "lower trainer.lr": the
    noise's std, noise_multiplier x max_grad_norm, is what to lower."""
    from robustai.training import TrainingDiverged

    with pytest.raises(TrainingDiverged) as info:
        train(["privacy=dpsgd", "attack=none", "privacy.noise_multiplier=1e10"], tmp_path)
    message = str(info.value)
    assert message.startswith("the loss became NaN or infinite")
    assert "privacy.noise_multiplier x privacy.max_grad_norm = 1e+10" in message
    assert "\n" not in message
