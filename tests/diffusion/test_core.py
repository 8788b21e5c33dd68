"""Diffusion core as properties: schedules, q_sample moments, eps/v algebra, samplers, EMA."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.diffusion import NoiseSchedule, make_betas, sample, step_sequence
from unetkit.diffusion.options import DiffusionConfig
from unetkit.diffusion.training import diffusion_loss, noised_batch
from unetkit.model import UNet, UNetConfig
from unetkit.train.ema import ema_copy, update_ema


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_start_near_clean_and_end_near_pure_noise(kind: str) -> None:
    s = NoiseSchedule.make(kind, 1000)
    assert s.betas.shape == (1000,) and bool((s.betas > 0).all()) and bool((s.betas < 1).all())
    assert float(s.alpha_bar[0]) > 0.999 and float(s.alpha_bar[-1]) < 1e-3
    assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all())  # strictly more noise each step


def test_linear_betas_are_ho_et_al_values_and_cosine_follows_its_formula() -> None:
    b = make_betas("linear", 1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    s = NoiseSchedule.make("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(s.alpha_bar[499]) == pytest.approx(f(500) / f(0), rel=1e-9)


def test_q_sample_has_the_stated_mean_and_variance() -> None:
    s = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 0.7)
    t = torch.full((20000,), 300)
    x_t = s.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    a = float(s.alpha_bar[300])
    assert float(x_t.mean()) == pytest.approx(math.sqrt(a) * 0.7, abs=0.02)
    assert float(x_t.var()) == pytest.approx(1 - a, rel=0.05)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_target_and_split_invert_each_other(prediction: str) -> None:
    s = NoiseSchedule.make("cosine", 100)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 2, 5, generator=g), torch.randn(4, 2, 5, generator=g)
    t = torch.tensor([0, 10, 50, 99])
    x_t = s.q_sample(x0, t, noise)
    x0_hat, eps_hat = s.split(x_t, t, s.target(x0, noise, t, prediction), prediction)
    torch.testing.assert_close(x0_hat, x0, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, noise, atol=1e-4, rtol=1e-4)


def test_step_sequences() -> None:
    assert step_sequence(10, 50) == list(range(9, -1, -1))
    seq = step_sequence(1000, 50)
    assert len(seq) == 50 and seq[0] == 999 and seq[-1] == 0 and seq == sorted(seq, reverse=True)


class Oracle(torch.nn.Module):
    """A perfect ``eps`` denoiser for data that is always the constant ``c``."""

    def __init__(self, schedule: NoiseSchedule, c: float) -> None:
        super().__init__()
        self.s, self.c = schedule, c
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None):
        a = self.s.alpha_bar[t].float().reshape(-1, 1, 1)
        return (x - a.sqrt() * self.c) / (1 - a).sqrt()


@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 10), ("ddpm", 100), ("ddpm", 7)])
def test_samplers_recover_the_data_with_a_perfect_denoiser(sampler: str, steps: int) -> None:
    s = NoiseSchedule.make("linear", 100)
    x = sample(Oracle(s, 0.3), s, (3, 1, 4), prediction="eps", sampler=sampler, steps=steps)
    torch.testing.assert_close(x, torch.full_like(x, 0.3), atol=1e-4, rtol=0)


def _tiny(num_class_labels: int = 0) -> UNet:
    torch.manual_seed(0)
    config = UNetConfig(
        widths=(4, 8),
        in_channels=1,
        out_channels=1,
        norm="group",
        act="silu",
        time_conditioning=True,
        num_class_labels=num_class_labels,
    )
    model = UNet(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "film" in name:
                p.normal_(0, 0.3)
    return model


def test_ddim_with_eta_0_is_deterministic_and_seeds_choose_the_noise() -> None:
    s = NoiseSchedule.make("cosine", 50)
    m = _tiny()
    a = sample(m, s, (2, 1, 8, 8), prediction="v", steps=5, seed=3)
    b = sample(m, s, (2, 1, 8, 8), prediction="v", steps=5, seed=3)
    c = sample(m, s, (2, 1, 8, 8), prediction="v", steps=5, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert float(a.abs().max()) <= 1.0 + 1e-5  # x0 clipped to the data range


def test_guidance_one_is_the_conditional_model_and_zero_the_unconditional() -> None:
    s = NoiseSchedule.make("cosine", 50)
    m = _tiny(num_class_labels=3)
    labels = torch.tensor([0, 2])
    kw = {"prediction": "eps", "steps": 4, "seed": 1, "null_label": 3}
    plain = sample(m, s, (2, 1, 8, 8), labels=labels, guidance=1.0, **kw)
    guided1 = sample(m, s, (2, 1, 8, 8), labels=labels, guidance=1.0 + 1e-12, **kw)
    uncond = sample(m, s, (2, 1, 8, 8), labels=torch.full((2,), 3), guidance=1.0, **kw)
    guided0 = sample(m, s, (2, 1, 8, 8), labels=labels, guidance=0.0, **kw)
    torch.testing.assert_close(plain, guided1, atol=1e-3, rtol=0)
    torch.testing.assert_close(uncond, guided0, atol=1e-3, rtol=0)


def test_noised_batch_drops_labels_at_the_stated_rate_and_the_loss_trains() -> None:
    s = NoiseSchedule.make("linear", 100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(4000, 1, 2)
    nb = noised_batch(
        s,
        x0,
        torch.zeros(4000, dtype=torch.long),
        prediction="eps",
        label_dropout=0.25,
        null_label=9,
        generator=g,
    )
    assert float((nb.labels == 9).float().mean()) == pytest.approx(0.25, abs=0.03)
    torch.testing.assert_close(
        nb.target,
        nb.x_t / (1 - s.alpha_bar[nb.t]).sqrt().float().reshape(-1, 1, 1),
        atol=1e-4,
        rtol=1e-4,
    )
    m = _tiny(num_class_labels=2)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    x0 = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1
    labels = torch.tensor([0, 1] * 4)
    losses = []
    for _ in range(30):
        batch = noised_batch(s, x0, labels, prediction="eps", null_label=2, generator=g)
        loss = diffusion_loss(m, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_ema_warms_up_then_averages_and_lives_in_the_optimizer_state() -> None:
    lin = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    update_ema(lin, opt, 0.9)  # starts at the weights
    with torch.no_grad():
        lin.weight.fill_(1.0)
    update_ema(lin, opt, 0.9)  # n=0: d = min(0.9, 1/10) = 0.1
    assert float(opt.state[lin.weight]["ema"]) == pytest.approx(0.9)
    update_ema(lin, opt, 0.5)  # n=1: d = min(0.5, 2/11)
    assert float(opt.state[lin.weight]["ema"]) == pytest.approx(0.9 + (1 - 2 / 11) * 0.1)
    avg = ema_copy(lin, opt)
    assert float(avg.weight) == pytest.approx(0.9 + (1 - 2 / 11) * 0.1)
    assert float(lin.weight) == 1.0
    assert "ema" in opt.state_dict()["state"][0]  # saved with the optimiser


def test_bad_diffusion_options_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match="schedule"):
        DiffusionConfig(schedule="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label_dropout"):
        DiffusionConfig(label_dropout=1.0)
    with pytest.raises(ValueError, match="steps"):
        step_sequence(10, 0)
