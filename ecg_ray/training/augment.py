"""ECG batch augmentations, applied on the batch's device inside the training loop.

This module owns the augmentation registry (``AUGMENTERS`` / ``AUGMENT_NAMES``) and
``build_augmenter``, which turns the sweep's ``augment`` setting into one callable
``aug(x, generator) -> x``. Plain torch, no Ray. Conventions:
- ``x`` is a float batch of shape ``(B, L)`` or ``(B, C, L)`` (``C`` = 1 here),
  z-scored per record, so absolute noise levels are in units of signal std.
- Each augmenter is applied to each sample independently with probability ``p``;
  random numbers for *all* samples are drawn whether applied or not, so the random
  stream consumed does not depend on the coin flips.
- Randomness comes only from the ``generator`` passed in (a ``torch.Generator`` on
  the batch's device, see ``make_generator``): same seed, same output.
- The input is never modified in place.
"""

from __future__ import annotations

import inspect
import re

import torch
import torch.nn.functional as F


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A seeded generator on ``device`` (CUDA tensors need a CUDA generator)."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


class Augmenter:
    """Base class: subclasses implement ``transform(x, g)`` on ``(B, C, L)`` and
    return a new tensor for the whole batch; ``__call__`` keeps it for a random
    subset of samples (probability ``p``)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = float(p)

    def transform(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() not in (2, 3):
            raise ValueError(f"expected a batch of shape (B, L) or (B, C, L), got {tuple(x.shape)}")
        x3 = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, C, L), a view: never written to
        apply = torch.rand(x3.shape[0], generator=generator, device=x.device) < self.p
        out = torch.where(apply[:, None, None], self.transform(x3, generator), x3)
        return out.reshape(x.shape)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Jitter(Augmenter):
    """Additive Gaussian noise with std ``sigma`` (in units of the z-scored signal)."""

    def __init__(self, p: float = 0.5, sigma: float = 0.05):
        super().__init__(p)
        self.sigma = float(sigma)

    def transform(self, x, g):
        return x + self.sigma * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


class Scaling(Augmenter):
    """Multiply each sample's amplitude by a factor drawn from N(1, sigma)."""

    def __init__(self, p: float = 0.5, sigma: float = 0.1):
        super().__init__(p)
        self.sigma = float(sigma)

    def transform(self, x, g):
        factor = 1.0 + self.sigma * torch.randn(x.shape[0], 1, 1, generator=g, device=x.device, dtype=x.dtype)
        return x * factor


class TimeWarp(Augmenter):
    """Smooth random time stretch, length preserved.

    The local speed is ``exp(strength * N(0, 1))`` at ``knots`` evenly spaced knots,
    linearly interpolated over the length; its cumulative sum, rescaled to ``[0, L-1]``,
    is a smooth monotone map from output to input time, and the signal is resampled
    along it by linear interpolation. ``strength=0`` is the identity (up to rounding).
    """

    def __init__(self, p: float = 0.5, strength: float = 0.1, knots: int = 4):
        super().__init__(p)
        if knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        self.strength, self.knots = float(strength), int(knots)

    def transform(self, x, g):
        B, C, L = x.shape
        log_speed = self.strength * torch.randn(B, 1, self.knots, generator=g, device=x.device)
        speed = F.interpolate(log_speed.exp(), size=L, mode="linear", align_corners=True)[:, 0]  # (B, L)
        t = speed.cumsum(-1) - speed[:, :1]  # starts at 0, strictly increasing
        t = t * ((L - 1) / t[:, -1:])  # ends at L-1
        i0 = t.floor().long().clamp_(0, max(L - 2, 0))
        frac = (t - i0).clamp_(0.0, 1.0).to(x.dtype)[:, None, :]
        i0 = i0[:, None, :].expand(B, C, L)
        i1 = (i0 + 1).clamp_(max=L - 1)
        return torch.lerp(x.gather(-1, i0), x.gather(-1, i1), frac)


class Cutout(Augmenter):
    """Zero ``n_spans`` non-overlapping random spans per sample, together
    ``fraction`` of the length (each span ``round(fraction * L / n_spans)``)."""

    def __init__(self, p: float = 0.5, fraction: float = 0.1, n_spans: int = 2):
        super().__init__(p)
        if not 0.0 <= fraction <= 1.0 or n_spans < 1:
            raise ValueError(f"need 0 <= fraction <= 1 and n_spans >= 1, got {fraction}, {n_spans}")
        self.fraction, self.n_spans = float(fraction), int(n_spans)

    def transform(self, x, g):
        B, _, L = x.shape
        n = self.n_spans
        width = min(int(round(self.fraction * L / n)), L // n)
        # Uniform non-overlapping placement: sorted starts in the length left after
        # removing the spans, then shift the k-th start right by k spans.
        free = torch.randint(0, L - n * width + 1, (B, n), generator=g, device=x.device)
        starts = free.sort(-1).values + width * torch.arange(n, device=x.device)
        pos = torch.arange(L, device=x.device)
        inside = ((pos >= starts[..., None]) & (pos < starts[..., None] + width)).any(1)  # (B, L)
        return x.masked_fill(inside[:, None, :], 0.0)


AUGMENTERS: dict[str, type[Augmenter]] = {"jitter": Jitter, "scaling": Scaling, "time_warp": TimeWarp, "cutout": Cutout}
AUGMENT_NAMES: tuple[str, ...] = tuple(AUGMENTERS)


class Compose:
    """Apply augmenters in order; an empty ``Compose`` returns ``x`` unchanged."""

    def __init__(self, augmenters: list):
        self.augmenters = list(augmenters)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for aug in self.augmenters:
            x = aug(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.augmenters})"


def _names(value) -> list[str]:
    """The names of an ``augment`` setting as written, unchecked: None, ``"none"`` or ``""`` → ``[]``."""
    if value is None:
        return []
    if isinstance(value, str):
        value = re.split(r"[+,]", value)
    return [str(v).strip() for v in value if str(v).strip() not in ("", "none")]


def parse_augment(value) -> list[str]:
    """The ``augment`` setting as a list of names, in the order given: None,
    ``"none"`` or ``""`` → ``[]``; ``"all"`` → every name; names joined by ``,``
    or ``+`` (``"jitter,cutout"``, ``"jitter+cutout"``) or a list of them; an unknown
    name is a ValueError, ``"all"`` or not. The one parser of the setting (config, CLI,
    sweep specs, run tables)."""
    names = _names(value)
    unknown = [n for n in names if n not in AUGMENTERS and n != "all"]
    if unknown:
        raise ValueError(f"augment: unknown augmentation {unknown[0]!r}; "
                         f"choose from {', '.join(AUGMENT_NAMES)}, all, none")
    return list(AUGMENT_NAMES) if "all" in names else names


def augment_label(value) -> str:
    """The ``augment`` setting as one string: ``none``, ``all``, or names joined by
    ``+`` in the registry's order (``jitter+cutout``), whichever spelling it came in.
    Unchecked, so that a run table reads what any stored trial was given (unknown names last)."""
    names = _names(value)
    if not names:
        return "none"
    if "all" in names or set(names) >= set(AUGMENT_NAMES):
        return "all"
    order = {n: i for i, n in enumerate(AUGMENT_NAMES)}
    return "+".join(sorted(dict.fromkeys(names), key=lambda n: (order.get(n, len(order)), n)))


def build_augmenter(names: list[str] | str | None, p: float = 0.5, **params) -> Compose:
    """``names``: any spelling ``parse_augment`` reads. ``params`` are flat
    ``<name>_<arg>`` keys, e.g. ``jitter_sigma=0.05, time_warp_strength=0.1,
    cutout_fraction=0.1`` (keys for augmenters that are not selected are accepted
    and ignored, so one sweep config serves every arm)."""
    names = parse_augment(names)
    owner_of = {f"{n}_{arg}": (n, arg) for n, cls in AUGMENTERS.items()
                for arg in inspect.signature(cls).parameters if arg != "p"}
    kwargs: dict[str, dict] = {n: {} for n in AUGMENT_NAMES}
    for key, value in params.items():
        if key not in owner_of:
            raise ValueError(f"unknown augmentation parameter {key!r}; valid: {list(owner_of)}")
        name, arg = owner_of[key]
        kwargs[name][arg] = value
    return Compose([AUGMENTERS[n](p=p, **kwargs[n]) for n in names])
