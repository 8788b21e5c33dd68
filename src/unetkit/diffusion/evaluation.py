"""An evaluation of generated digits you can trust: Fréchet distance, conditional accuracy,
memorisation.

**Feature classifier.** A small CNN (three 3x3 convolutions, 16-32-64 channels, the last two
with stride 2, ReLU, a linear layer to 64 features (ReLU) -> 10 classes) trained on the
digits' *training* split (:func:`unetkit.tasks.diffusion_data.digits_split`) at the model's
image size: 30 epochs of Adam (lr 1e-3, batch 64), seed 0, in float32 on the CPU. It is cached
as ``digits-classifier-{size}-v1.safetensors`` in ``$UNETKIT_CACHE`` (default
``$XDG_CACHE_HOME/unetkit`` or ``~/.cache/unetkit``), so every evaluation uses the same one.

**Fréchet distance** (as FID, in this classifier's feature space rather than Inception's):
``|m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))`` between the features of the generated images
and of the held-out real digits (the split's 20 %, never seen by the denoiser or the
classifier). For scale, the same distance between the training and held-out real digits is
reported as ``fd_real``: a perfect generator scores about that.

**Conditional accuracy**: the classifier's accuracy on class-conditional samples (the class
asked for is the truth); its accuracy on the held-out real digits is reported beside it.

**Memorisation**: each sample's RMS pixel distance (in [-1, 1]) to its nearest training image,
against the same for held-out real images: samples much nearer the training set than real
unseen digits are copies.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import Tensor, nn


class DigitFeatures(nn.Module):
    """``(B, 1, H, W) in [-1, 1] -> logits (B, 10)``; :meth:`features` gives ``(B, 64)``."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        side = -(-size // 4)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 64), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.embed(self.convs(x))  # (B, 64)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def cache_dir() -> Path:
    """``$UNETKIT_CACHE``, else ``$XDG_CACHE_HOME/unetkit``, else ``~/.cache/unetkit``."""
    if os.environ.get("UNETKIT_CACHE"):
        return Path(os.environ["UNETKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unetkit"


def train_classifier(images: np.ndarray, labels: np.ndarray, epochs: int = 30) -> DigitFeatures:
    """The feature classifier trained on ``images (N, 1, H, W)`` (see the module doc)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = DigitFeatures(images.shape[-1])
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def digits_classifier(size: int) -> DigitFeatures:
    """The cached feature classifier for ``size x size`` digits (trained on first use)."""
    from safetensors.torch import load_file, save

    from unetkit.io.atomic import atomic_save_bytes
    from unetkit.tasks.diffusion_data import digits_split, load_digits

    path = cache_dir() / f"digits-classifier-{size}-v1.safetensors"
    net = DigitFeatures(size)
    if path.is_file():
        try:
            net.load_state_dict(load_file(str(path)))
            return net.eval()
        except Exception:  # a damaged cache entry is rebuilt
            pass
    images, labels = load_digits(size)
    train, _ = digits_split(len(images))
    net = train_classifier(images[train], labels[train])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_bytes(path, save({k: v.contiguous() for k, v in net.state_dict().items()}))
    return net


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows ``a (N, D)`` and ``b (M, D)``."""
    m1, m2 = a.mean(0), b.mean(0)
    c1 = np.atleast_2d(np.cov(a, rowvar=False))
    c2 = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # few samples give a singular covariance: expected
        warnings.simplefilter("ignore")
        root = linalg.sqrtm(c1 @ c2)
        if not np.isfinite(root).all():  # regularised, as FID implementations do
            eps = np.eye(c1.shape[0]) * 1e-6
            root = linalg.sqrtm((c1 + eps) @ (c2 + eps))
    root = np.real(root)
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(root))


def nearest_distance(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """RMS pixel distance of each of ``samples (N, ...)`` to its nearest ``reference`` row."""
    a = torch.from_numpy(samples.reshape(len(samples), -1)).double()
    b = torch.from_numpy(reference.reshape(len(reference), -1)).double()
    d = torch.cdist(a, b).min(dim=1).values / np.sqrt(a.shape[1])
    return d.numpy()


@torch.no_grad()
def _features(net: DigitFeatures, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    f = torch.cat([net.features(x[i : i + 512]) for i in range(0, len(x), 512)])
    return f.numpy().astype(np.float64), net.fc(f).argmax(1).numpy()


@dataclass
class SampleQuality:
    """The numbers of :func:`score_samples` (see the module doc)."""

    n: int
    fd: float
    fd_real: float
    accuracy: float | None
    accuracy_real: float
    nearest_train: float
    nearest_train_real: float

    def to_json(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        acc = "n/a (unconditional)" if self.accuracy is None else f"{self.accuracy:.3f}"
        return [
            f"samples: {self.n}",
            f"frechet distance (digit-classifier features) to held-out digits: {self.fd:.3f}"
            f"  (train vs held-out real: {self.fd_real:.3f})",
            f"conditional accuracy of the classifier on samples: {acc}"
            f"  (on held-out real: {self.accuracy_real:.3f})",
            f"nearest training image, median RMS distance: samples {self.nearest_train:.3f}"
            f", held-out real {self.nearest_train_real:.3f}",
        ]


def score_samples(samples: np.ndarray, labels: np.ndarray | None, size: int) -> SampleQuality:
    """Score generated digits ``(N, 1, size, size)`` in [-1, 1] (``labels``: classes asked)."""
    from unetkit.tasks.diffusion_data import digits_split, load_digits

    images, truth = load_digits(size)
    train, held = digits_split(len(images))
    net = digits_classifier(size)
    f_s, pred_s = _features(net, samples)
    f_h, pred_h = _features(net, images[held])
    f_t, _ = _features(net, images[train])
    return SampleQuality(
        n=len(samples),
        fd=frechet_distance(f_s, f_h),
        fd_real=frechet_distance(f_t, f_h),
        accuracy=None if labels is None else float((pred_s == labels).mean()),
        accuracy_real=float((pred_h == truth[held]).mean()),
        nearest_train=float(np.median(nearest_distance(samples, images[train]))),
        nearest_train_real=float(np.median(nearest_distance(images[held], images[train]))),
    )


def high_frequency_energy(images: np.ndarray, cutoff: float = 0.25) -> float:
    """Share of spectral energy above ``cutoff`` cycles/pixel (mean over ``(N, C, H, W)``).

    The mean of each image is removed first, so the share measures detail, not brightness.
    """
    x = images - images.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(x.shape[-2])[:, None]
    fx = np.fft.fftfreq(x.shape[-1])[None, :]
    high = np.sqrt(fy**2 + fx**2) > cutoff
    total = power.sum(axis=(-2, -1))
    return float(np.mean(power[..., high].sum(-1) / np.maximum(total, 1e-12)))


def evaluate_denoiser(
    path: str | Path,
    *,
    n: int = 500,
    sampler: str = "ddim",
    steps: int | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    weights: str = "ema",
    progress: object = None,
) -> SampleQuality:
    """Generate ``n`` digits with the model at ``path`` (classes in turn) and score them."""
    from unetkit.diffusion.generate import check_request, generate, labels_for, load_denoiser
    from unetkit.errors import UnetkitError

    d = load_denoiser(path, weights=weights)
    if d.info.get("builtin") != "digits" or d.model.config.in_channels != 1:
        raise UnetkitError(
            f"--model {path}: the Fréchet distance and accuracy use unetkit's digits classifier, "
            f"so evaluate needs a model trained on the built-in digits (data.path=digits)"
        )
    check_request(d, None, guidance)
    labels = labels_for(d, n, None)
    images = generate(
        d,
        n,
        sampler=sampler,  # type: ignore[arg-type]
        steps=steps,
        labels=labels,
        guidance=guidance,
        seed=seed,
        progress=progress,  # type: ignore[arg-type]
    )
    size = d.image_shape[-1]
    return score_samples(images, None if labels is None else labels.numpy(), size)
