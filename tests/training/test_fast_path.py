"""The fast path changes cost, not results: input-only attack gradients train the same weights
as a textbook loop whose attack backpropagates into the parameters too."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustai.attacks import FGSM
from robustai.attacks.fgsm import uniform_noise
from robustai.data import build_data
from robustai.models import build_model
from robustai.training import AdversarialObjective, Trainer


def _setup():
    torch.manual_seed(0)
    data = build_data(
        "synthetic", num_samples=256, input_shape=(1, 8, 8), num_classes=4, batch_size=32
    )
    model = build_model("small_cnn", data.input_shape, data.num_classes, data.mean, data.std)
    return data, model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def _textbook_fgsm_rs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
    """FGSM-RS as often written (torchattacks.FFGSM's steps): loss.backward() fills parameter
    grads as a side effect."""
    alpha = 1.25 * eps
    start = torch.clamp(x + uniform_noise(x, eps), 0, 1).requires_grad_(True)
    model.eval()
    F.cross_entropy(model(start), y).backward()
    model.train()
    delta = torch.clamp(start.detach() + alpha * start.grad.sign() - x, -eps, eps)
    return torch.clamp(x + delta, 0, 1)


def test_input_only_gradients_give_identical_weights() -> None:
    data, fast_model, fast_opt = _setup()
    torch.manual_seed(1)
    Trainer(
        fast_model,
        AdversarialObjective(FGSM(0.1, random_start=True)),
        fast_opt,
        epochs=2,
        progress=False,
    ).fit(data.train)

    data, slow_model, slow_opt = _setup()
    torch.manual_seed(1)
    for _ in range(2):
        slow_model.train()
        for x, y in data.train:
            x_adv = _textbook_fgsm_rs(slow_model, x, y, 0.1)
            slow_opt.zero_grad(set_to_none=True)  # discards the attack's parameter grads
            F.cross_entropy(slow_model(x_adv), y).backward()
            slow_opt.step()
    for (k, a), b in zip(
        fast_model.state_dict().items(), slow_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_autocast_objective_runs_in_bf16_and_returns_a_float32_loss() -> None:
    from robustai.training import AutocastObjective, StandardObjective

    data, model, _ = _setup()
    seen = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    obj = AutocastObjective(StandardObjective(), "cpu")
    x, y = next(iter(data.train))
    loss, _ = obj(model, x, y, 0.0)
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32
    assert obj.adversarial is False and obj.replays == 1


def test_free_training_under_autocast_resumes_exactly(tmp_path) -> None:
    """trainer.amp=true with objective=free: the carried perturbation is part of the checkpoint
    (it was left out, so a resumed run restarted it from zero)."""
    from robustai.cli.pipeline import checkpoint_components
    from robustai.training import (
        AutocastObjective,
        CatastrophicOverfittingWatchdog,
        FreeAdversarialObjective,
        load_checkpoint,
        read_checkpoint,
        save_checkpoint,
    )

    def run(epochs: int):
        torch.manual_seed(0)
        data = build_data("synthetic", num_samples=32, num_classes=4, batch_size=12)
        model = build_model("mlp", data.input_shape, data.num_classes, data.mean, data.std)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        objective = AutocastObjective(FreeAdversarialObjective(0.1, replays=2), "cpu")
        trainer = Trainer(model, objective, opt, epochs=epochs, progress=False)
        watchdog = CatastrophicOverfittingWatchdog(FGSM(0.1), data.eval.x[:4], data.eval.y[:4])
        return trainer, data, checkpoint_components(trainer, data.train, watchdog)

    trainer, data, comps = run(2)
    assert "objective" in comps
    trainer.fit(data.train)
    expected = trainer.model.state_dict()

    trainer, data, comps = run(1)
    trainer.fit(data.train)
    path = save_checkpoint(tmp_path, comps, epoch=1)
    trainer, data, comps = run(2)
    load_checkpoint(comps, read_checkpoint(path)[0], path)
    trainer.fit(data.train)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, expected[k]), k
