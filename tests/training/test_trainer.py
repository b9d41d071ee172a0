"""The training loop, objectives, schedules and the catastrophic-overfitting watchdog."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from robustai.attacks import FGSM, PGD
from robustai.data import build_data
from robustai.evaluation import accuracy, robust_accuracy
from robustai.models import build_model
from robustai.training import (
    AdversarialObjective,
    CatastrophicOverfittingWatchdog,
    EpochAccuracy,
    FreeAdversarialObjective,
    StandardObjective,
    Trainer,
    WatchdogCallback,
    build_schedule,
)


def small_setup(seed: int = 0):
    torch.manual_seed(seed)
    data = build_data(
        "synthetic", num_samples=512, input_shape=(1, 8, 8), num_classes=4, seed=seed, batch_size=32
    )
    model = build_model("small_cnn", data.input_shape, data.num_classes, data.mean, data.std)
    return data, model


def fit(objective, epochs: int = 3, seed: int = 0, callbacks=()):
    data, model = small_setup(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = build_schedule("onecycle", opt, epochs * len(data.train))
    trainer = Trainer(
        model, objective, opt, sched, epochs=epochs, callbacks=callbacks, progress=False
    )
    return data, model, trainer, trainer.fit(data.train)


def test_standard_training_learns() -> None:
    data, model, _, result = fit(StandardObjective())
    assert result.epochs == 3 and not result.stopped_early
    assert accuracy(model, data.eval.x, data.eval.y) > 0.9
    assert result.history[-1].loss < result.history[0].loss


def test_adversarial_training_is_more_robust_than_standard() -> None:
    data, plain, _, _ = fit(StandardObjective(), epochs=4)
    _, robust, _, _ = fit(AdversarialObjective(FGSM(0.15, random_start=True)), epochs=4)
    pgd = PGD(0.15, steps=10)
    assert (
        robust_accuracy(robust, pgd, data.eval.x, data.eval.y)
        > robust_accuracy(plain, pgd, data.eval.x, data.eval.y) + 0.1
    )


def test_same_seed_same_weights() -> None:
    _, a, _, _ = fit(AdversarialObjective(FGSM(0.1, random_start=True)), epochs=1, seed=3)
    _, b, _, _ = fit(AdversarialObjective(FGSM(0.1, random_start=True)), epochs=1, seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_epoch_accuracy_callback_reports_clean_accuracy() -> None:
    data, _ = small_setup()
    cb = EpochAccuracy(data.train.x[:64], data.train.y[:64], data.eval.x, data.eval.y)
    _, model, _, result = fit(StandardObjective(), epochs=1, callbacks=[cb])
    extra = result.history[0].extra
    train_acc = accuracy(model, data.train.x[:64], data.train.y[:64])
    val_acc = accuracy(model, data.eval.x, data.eval.y)
    assert extra["val_clean_acc"] == pytest.approx(val_acc)
    assert extra["train_clean_acc"] == pytest.approx(train_acc)
    assert train_acc != pytest.approx(val_acc)  # the two subsets tell the two values apart


def test_eps_warmup_scales_eps_and_step_size() -> None:
    obj = AdversarialObjective(FGSM(0.2, alpha=0.25, random_start=True), eps_warmup_epochs=2)
    half = obj.attack_at(1.0)
    assert half.eps == pytest.approx(0.1) and half.alpha == pytest.approx(0.125)
    assert obj.attack_at(2.0) is obj.attack
    assert obj.attack_at(0.0).eps == 0.0


def test_schedules() -> None:
    def lrs(name: str, steps: int = 100) -> list[float]:
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.9)
        sched = build_schedule(name, opt, steps, warmup_fraction=0.25)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert set(lrs("constant")) == {0.2}
    cyc = lrs("cyclic")
    assert cyc[0] == 0.0 and max(cyc) == pytest.approx(0.2) and cyc.index(max(cyc)) == 25
    assert cyc[-1] < 0.01
    one = lrs("onecycle")
    assert max(one) == pytest.approx(0.2, rel=1e-3) and one[0] < 0.02 and one[-1] < 1e-3
    with pytest.raises(ValueError, match="valid: constant, onecycle, cyclic"):
        lrs("cosine")


@pytest.mark.parametrize("name", ["constant", "onecycle", "cyclic"])
def test_schedules_leave_the_configured_momentum_alone(name: str) -> None:
    """torch's OneCycleLR cycles momentum between 0.85 and 0.95 by default, overwriting the
    optimizer's: trainer.momentum=0.5 and 0.9 trained byte-identical models."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.5)
    sched = build_schedule(name, opt, 20, warmup_fraction=0.3)
    seen = set()
    for _ in range(20):
        seen.add(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    assert seen == {0.5}


@pytest.mark.parametrize(("fraction", "steps"), [(0.1, 10), (0.25, 4), (0.5, 2), (0.05, 20)])
def test_a_one_step_warm_up_starts_at_the_peak(fraction: float, steps: int) -> None:
    """warmup_fraction x steps == 1 made OneCycleLR divide by a warm-up of length zero
    (ZeroDivisionError at the first step, exit 1 from the CLI)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.9)
    sched = build_schedule("onecycle", opt, steps, warmup_fraction=fraction)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-3



def test_epoch_lr_is_the_rate_its_last_step_used() -> None:
    """A cyclic schedule ends at 0 after the last step: the epoch reports the rate it trained
    with, not the one the scheduler has moved on to."""
    data, model = small_setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: used.append(o.param_groups[0]["lr"]))
    steps = len(data.train)
    sched = build_schedule("cyclic", opt, 2 * steps)
    result = Trainer(model, StandardObjective(), opt, sched, epochs=2, progress=False).fit(
        data.train
    )
    assert len(used) == 2 * steps
    assert [s.lr for s in result.history] == [used[steps - 1], used[-1]]
    assert result.history[-1].lr > 0


@pytest.mark.parametrize("adversarial", [False, True])
def test_epoch_log_line_names_what_each_figure_measured(
    adversarial: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The line uses the TensorBoard tags' names: the loop's accuracy is adv_acc on adversarial
    batches (train/adv_acc), train_acc on clean ones (train/acc); clean accuracy on the eval
    split is val_clean_acc, and the watchdog's PGD names its attack and the split it watches,
    so it does not read as a validation robust accuracy."""
    data, _ = small_setup()
    watchdog = CatastrophicOverfittingWatchdog(
        PGD(0.1, steps=2), data.train.x[:32], data.train.y[:32]
    )
    callbacks = [
        EpochAccuracy(data.train.x[:64], data.train.y[:64], data.eval.x, data.eval.y),
        WatchdogCallback(watchdog, split="train"),
    ]
    objective = AdversarialObjective(FGSM(0.1, random_start=True)) if adversarial else None
    with caplog.at_level("INFO", logger="robustai.training.trainer"):
        *_, result = fit(objective or StandardObjective(), epochs=1, callbacks=callbacks)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1")]
    s = result.history[0]
    acc = "adv_acc" if adversarial else "train_acc"
    assert f"| {acc} {s.acc:.3f} |" in line
    assert f"| val_clean_acc {s.extra['val_clean_acc']:.3f} |" in line
    assert f"| watchdog pgd2 (train) {s.extra['watchdog_robust_acc']:.3f} |" in line
    # measuring only (trainer.watchdog.enabled=false): it read as a guard that would stop the run
    callbacks[1] = WatchdogCallback(watchdog, active=False, split="train")
    caplog.clear()
    with caplog.at_level("INFO", logger="robustai.training.trainer"):
        fit(objective or StandardObjective(), epochs=1, callbacks=callbacks)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1")]
    assert "| watchdog pgd2 (train, off) " in line
    assert "robust_acc" not in line and "clean_acc" not in line.replace("val_clean_acc", "")


class _FakeTrainer:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason


def test_watchdog_detects_collapse_and_restores_best_weights() -> None:
    data, model, _, _ = fit(AdversarialObjective(FGSM(0.1, random_start=True)), epochs=3)
    x, y = data.eval.x[:128], data.eval.y[:128]
    watchdog = CatastrophicOverfittingWatchdog(PGD(0.1, steps=5), x, y, max_drop=0.2)
    cb = WatchdogCallback(watchdog)
    trainer = _FakeTrainer(model)
    from robustai.training import EpochStats

    stats = EpochStats(epoch=0, loss=0.0, acc=0.0, lr=0.0, seconds=1.0, images=1)
    cb.on_epoch_end(trainer, stats)  # type: ignore[arg-type]
    best = {k: v.clone() for k, v in model.state_dict().items()}
    assert stats.extra["watchdog_robust_acc"] > 0.5 and trainer.stop_reason is None

    # Collapse: the classifier's last layer forgets everything (constant predictions).
    with torch.no_grad():
        last = model[1].classifier[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    stats2 = EpochStats(epoch=1, loss=0.0, acc=0.0, lr=0.0, seconds=1.0, images=1)
    cb.on_epoch_end(trainer, stats2)  # type: ignore[arg-type]
    assert stats2.extra["watchdog_robust_acc"] < 0.5
    assert trainer.stop_reason is not None and "catastrophic overfitting" in trainer.stop_reason
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k
    assert watchdog.state_dict()["collapsed_at"] == 1
    # metrics.json counts epochs from 1, as the log does: best after the 1st, collapse in the 2nd
    assert watchdog.summary()["best_epoch"] == 1 and watchdog.summary()["collapsed_at"] == 2


def test_trainer_stops_when_a_callback_asks() -> None:
    class StopAfterFirst:
        def on_epoch_end(self, trainer: Trainer, stats) -> None:
            trainer.request_stop("enough")

    _, _, _, result = fit(StandardObjective(), epochs=5, callbacks=[StopAfterFirst()])
    assert result.epochs == 1 and result.stopped_early and result.stop_reason == "enough"


def test_attack_in_the_loop_leaves_no_parameter_grads_behind() -> None:
    """The loop's own backward is the only writer of .grad: the attack adds nothing to it."""
    data, model = small_setup()
    obj = AdversarialObjective(FGSM(0.1, random_start=True))
    x, y = next(iter(data.train))
    torch.manual_seed(0)
    loss, _ = obj(model, x, y, 0.0)
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    torch.manual_seed(0)
    x_adv = obj.attack(model, x, y)
    expected = torch.autograd.grad(
        nn.functional.cross_entropy(model(x_adv), y), list(model.parameters())
    )
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_free_adversarial_training_replays_and_stays_in_the_ball() -> None:
    from robustai.training import FreeAdversarialObjective

    data, model = small_setup()
    obj = FreeAdversarialObjective(eps=0.15, replays=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    steps = []
    opt.register_step_post_hook(lambda *_: steps.append(1))
    trainer = Trainer(model, obj, opt, epochs=2, progress=False)
    trainer.fit(data.train)
    assert len(steps) == 2 * len(data.train) * 3  # every minibatch replayed m times
    assert obj._delta is not None and obj._delta.abs().max() <= 0.15 + 1e-7
    assert obj._delta.abs().max() > 0.1  # the perturbation really moved
    pgd = PGD(0.15, steps=10)
    _, plain, _, _ = fit(StandardObjective(), epochs=2)
    assert robust_accuracy(model, pgd, data.eval.x, data.eval.y) > robust_accuracy(
        plain, pgd, data.eval.x, data.eval.y
    )


class _Batches:
    """An iterable of batches without a length, as a generator or a streaming data set gives."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __iter__(self):
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        return zip(self.x, self.y, strict=True)


@pytest.mark.parametrize("kind", ["iterable", "iterable_dataset"])
def test_fit_over_batches_without_a_length(kind: str) -> None:
    """``fit`` takes any iterable of (x, y) batches, as its type says: a loader without a length
    trains exactly as a list of the same batches."""
    data, model = small_setup()
    x, y = data.train.x, data.train.y
    if kind == "iterable":
        loader = _Batches(x, y, 64)
    else:
        loader = torch.utils.data.DataLoader(_Stream(x, y), batch_size=64)
    with pytest.raises(TypeError):
        len(loader)  # type: ignore[arg-type]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    objective = AdversarialObjective(FGSM(0.1))  # no random start: DataLoader draws a seed
    torch.manual_seed(1)
    result = Trainer(model, objective, opt, epochs=2, progress=False).fit(loader)

    _, reference = small_setup()
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    objective = AdversarialObjective(FGSM(0.1))  # no random start: DataLoader draws a seed
    torch.manual_seed(1)
    batches = list(_Batches(x, y, 64))
    expected = Trainer(reference, objective, opt, epochs=2, progress=False).fit(batches)
    assert [s.images for s in result.history] == [len(x)] * 2
    assert [s.loss for s in result.history] == pytest.approx([s.loss for s in expected.history])


def test_free_adversarial_training_warms_eps_up() -> None:
    """trainer.eps_warmup_epochs applies to objective=free too (it was silently ignored): the
    perturbation stays inside the ramped ball, and reaches the full eps after the warm-up."""
    from robustai.training import FreeAdversarialObjective

    data, model = small_setup()
    obj = FreeAdversarialObjective(eps=0.2, replays=2, eps_warmup_epochs=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = Trainer(model, obj, opt, epochs=1, progress=False)
    trainer.fit(data.train)  # progress 0 -> 1 - 1/len: eps below 0.1
    assert 0 < obj.state_dict()["delta"].abs().max() < 0.1
    trainer.epochs = 3
    trainer.fit(data.train)
    assert obj.state_dict()["delta"].abs().max() > 0.15


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_labels_of_any_integer_type_train_as_int64_ones(dtype: torch.dtype) -> None:
    """Labels from NumPy (int32) or image files (uint8) train as the same int64 labels do (the
    loss refused them with a torch error; the attacks took them already)."""
    data, model = small_setup()
    x, y = data.train.x, data.train.y
    runs = []
    for labels in (y, y.to(dtype)):
        _, model = small_setup()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        batches = [(x[i : i + 64], labels[i : i + 64]) for i in range(0, len(x), 64)]
        trainer = Trainer(model, AdversarialObjective(FGSM(0.1)), opt, epochs=1, progress=False)
        runs.append(trainer.fit(batches).history[0])
    assert runs[1].loss == pytest.approx(runs[0].loss) and runs[1].images == runs[0].images


@pytest.mark.parametrize("epochs", [1.5, -1, "2"])
def test_epochs_must_be_a_whole_number(epochs: object) -> None:
    _, model = small_setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="epochs must be a whole number"):
        Trainer(model, StandardObjective(), opt, epochs=epochs)  # type: ignore[arg-type]


def test_an_optimizer_that_cannot_train_the_model_is_refused() -> None:
    """None failed inside fit with an AttributeError; one built over another model's
    parameters trained nothing and said nothing."""
    _, model = small_setup()
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        Trainer(model, StandardObjective(), None, epochs=1)  # type: ignore[arg-type]
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="holds none of the model's parameters"):
        Trainer(model, StandardObjective(), other, epochs=1)


@pytest.mark.parametrize("objective", ["standard", "adversarial", "free"])
def test_an_empty_batch_is_named_not_taken_for_divergence(objective: str) -> None:
    """Its NaN loss stopped training as "diverged: lower the learning rate"."""
    data, model = small_setup()
    make = {
        "standard": StandardObjective,
        "adversarial": lambda: AdversarialObjective(FGSM(0.1)),
        "free": lambda: FreeAdversarialObjective(0.1, replays=2),
    }[objective]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data.train.x, data.train.y
    trainer = Trainer(model, make(), opt, epochs=1, progress=False)
    with pytest.raises(ValueError, match="a training batch is empty"):
        trainer.fit([(x[:8], y[:8]), (x[:0], y[:0])])


def test_a_label_past_the_models_classes_is_one_line() -> None:
    """Clean training raised torch's IndexError from inside the loss; the attacks named it."""
    data, model = small_setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = data.train.x[:8]
    y = torch.full((8,), 12)
    trainer = Trainer(model, StandardObjective(), opt, epochs=1, progress=False)
    with pytest.raises(ValueError, match="label 12 is out of range for a model of 4 classes"):
        trainer.fit([(x, y)])


def test_a_one_shot_iterator_is_named_when_the_next_epoch_sees_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data, model = small_setup()
    batches = iter([(data.train.x[:64], data.train.y[:64])])  # used up after one epoch
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with caplog.at_level("WARNING", logger="robustai"):
        result = Trainer(model, StandardObjective(), opt, epochs=2, progress=False).fit(batches)
    assert [s.images for s in result.history] == [64, 0]
    assert "epoch 2 saw no batches" in caplog.text and "one-shot iterator" in caplog.text
    # no loss and no accuracy measured, not a loss of 0.0 at accuracy 0.0
    empty = result.history[1]
    assert math.isnan(empty.loss) and math.isnan(empty.acc), empty


@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: (x * 255).round().to(torch.uint8), "x must be floating point inputs in"),
        (lambda x: x * 255, "training inputs must be in \\[0,1\\].*divide by 255"),
    ],
)
def test_inputs_outside_the_unit_range_are_refused_as_the_attacks_refuse_them(
    free: bool, make, message: str
) -> None:
    """The adversarial objective refused 8-bit or 0..255 images through its attack; the clean
    and free objectives trained on them and reported an accuracy."""
    from robustai.training import FreeAdversarialObjective

    data, model = small_setup()
    batches = [(make(data.train.x[:64]), data.train.y[:64])]
    objective = FreeAdversarialObjective(eps=0.1, replays=2) if free else StandardObjective()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match=message):
        Trainer(model, objective, opt, epochs=1, progress=False).fit(batches)
    with pytest.raises(ValueError, match=message.replace("training inputs", "attack inputs")):
        Trainer(model, AdversarialObjective(FGSM(0.1)), opt, epochs=1, progress=False).fit(batches)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # one-hot with as many classes as the batch has rows: the accuracy compared the (B, C)
        # labels with the predictions by broadcasting and read above 1
        (lambda x, y: (x[:4], nn.functional.one_hot(y[:4], 4).float()), "pass y.argmax\\(1\\)"),
        # other batch sizes failed inside the accuracy with a torch broadcast error
        (lambda x, y: (x, nn.functional.one_hot(y, 4).float()), "of shape \\(batch,\\)"),
        (lambda x, y: (x, y.float()), "integer dtype; got shape \\(16,\\) and dtype torch.float32"),
        (lambda x, y: (x, y[:, None]), "got shape \\(16, 1\\)"),
        (lambda x, y: (x, y[:8]), "16 inputs but 8 labels"),
    ],
)
def test_labels_that_are_not_one_class_index_per_input_are_refused(make, message: str) -> None:
    data, model = small_setup()
    batches = [make(data.train.x[:16], data.train.y[:16])]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match=message):
        Trainer(model, StandardObjective(), opt, epochs=1, progress=False).fit(batches)


@pytest.mark.parametrize("schedule", ["cyclic", "onecycle"])
def test_a_schedule_shorter_than_a_free_training_run_is_warned_about(
    schedule: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Free training steps the scheduler once per replay: a cyclic schedule sized by
    len(loader) ended in the first epoch and trained the rest at a rate of 0, silently."""
    from robustai.training import FreeAdversarialObjective

    data, model = small_setup()
    batches = [(data.train.x[i : i + 64], data.train.y[i : i + 64]) for i in range(0, 256, 64)]
    for total, warned in ((2 * len(batches), True), (2 * len(batches) * 2, False)):
        caplog.clear()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        sched = build_schedule(schedule, opt, total)
        trainer = Trainer(
            model, FreeAdversarialObjective(0.1, replays=2), opt, sched, epochs=2, progress=False
        )
        with caplog.at_level("WARNING", logger="robustai"):
            if warned and schedule == "onecycle":  # OneCycleLR fails at the step past its end
                with pytest.raises(ValueError, match="Tried to step"):
                    trainer.fit(batches)
            else:
                trainer.fit(batches)
        message = "schedule ends after 8 steps but this run takes 16 (2 epochs x 4 batches x 2"
        assert (message in caplog.text) is warned, caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warmup_fraction": 1.0}, "warmup_fraction must be a number in (0, 1); got 1.0"),
        ({"warmup_fraction": 2.0}, "warmup_fraction must be a number in (0, 1); got 2.0"),
        ({"total_steps": 2.5}, "total_steps must be a whole number of optimizer steps >= 0"),
        ({"total_steps": -5}, "total_steps must be a whole number of optimizer steps >= 0"),
    ],
)
@pytest.mark.parametrize("name", ["onecycle", "cyclic"])
def test_schedule_arguments_are_refused_in_one_line(name: str, kwargs: dict, message: str) -> None:
    """From Python, as the CLI refuses trainer.warmup_fraction: a fraction of 1 divided by zero
    inside torch at the last step, 2 never reached the peak rate, and a fractional total
    turned the Trainer's schedule-length warning off."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    args = {"total_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        build_schedule(name, opt, **args)


def test_objective_arguments_are_refused_when_built() -> None:
    """They failed at the first batch (an attack class taken for an instance: "eps must be a
    number ... got Sequential(...)"; 2.5 replays: range() of a float) or not at all (a
    negative eps ramp trained at full eps from the start)."""
    with pytest.raises(TypeError, match=r"attack must be an attack instance, e\.g\. PGD"):
        AdversarialObjective(PGD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps_warmup_epochs must be a number >= 0; got -1"):
        AdversarialObjective(PGD(eps=0.1), eps_warmup_epochs=-1)
    with pytest.raises(ValueError, match=r"replays must be a whole number >= 1; got 2\.5"):
        FreeAdversarialObjective(0.1, replays=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps must be a number in \\[0, 1\\]; got 'a'"):
        FreeAdversarialObjective("a")  # type: ignore[arg-type]
    AdversarialObjective(PGD(eps=0.1), eps_warmup_epochs=1)  # and good ones still build
    FreeAdversarialObjective(0.1, replays=2)
