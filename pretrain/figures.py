"""Figures of a pretraining run: sample grids, cross-modal figures and learning curves (PNG files).

What a dataset gets is said by its description, ``DatasetSplits.figure_hints`` (see :func:`figure_hints`):
``condition_on`` ("one_hot_classes": one row of samples per class of x2; "test_points": one row per test point's
x2), ``cross_modal`` (the labelled image/vector cross-modal figures of the environments) and ``feature_names``
(names of the last axis of x2, for titles). Datasets whose description has no hints fall back to
:data:`FALLBACK_HINTS` by name.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

CONDITION_KINDS = ("one_hot_classes", "test_points")
#: Hints of the project's datasets, used only when the dataset's description carries none.
FALLBACK_HINTS: dict[str, dict] = {
    "mnist": {"condition_on": "one_hot_classes", "cross_modal": False},
    "fashionmnist": {"condition_on": "one_hot_classes", "cross_modal": False},
    "celeba": {"condition_on": "test_points", "cross_modal": False},
    "pendulum_sound": {"condition_on": "test_points", "cross_modal": True,
                       "feature_names": ["Doppler frequency (Hz)", "amplitude 1/d²"]},
    "hyperhot": {"condition_on": "test_points", "cross_modal": True},
}
DEFAULT_HINTS = {"condition_on": "test_points", "cross_modal": False, "feature_names": None}
#: Names the warm-up weights had in histories written before ``LossOutput.schedule`` existed.
LEGACY_SCHEDULE_KEYS = ("train/beta_m_scale", "train/beta_c_scale", "train/kl_scale")


def figure_hints(splits) -> dict:
    """The figure hints of ``splits`` (its ``figure_hints``, else the fallback for its name), checked."""
    given = getattr(splits, "figure_hints", None) or FALLBACK_HINTS.get(splits.name, {})
    hints = {**DEFAULT_HINTS, **given}
    if hints["condition_on"] not in CONDITION_KINDS:
        raise ValueError(f"{splits.name}: figure_hints['condition_on'] = {hints['condition_on']!r}; "
                         f"use one of {CONDITION_KINDS}")
    return hints


def _to_device(batch: Mapping[str, torch.Tensor], device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _grid_images(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> images a grid can show: C not in (1, 3) is shown as C grey frames side by side."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.dim() == 4 and x.shape[1] not in (1, 3):
        b, c, h, w = x.shape
        x = x.reshape(b * c, 1, h, w)
    return x


def save_titled_grid(grid: torch.Tensor, path, title: str, row_labels: Sequence[str] = ()) -> None:
    """An image grid (3, H, W) with a title and, when given, a label at the left of each row of the grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = grid.permute(1, 2, 0).clamp(0, 1).numpy()
    height, width = image.shape[:2]
    fig, ax = plt.subplots(figsize=(max(6.0, width / 70), max(3.0, height / 70) + 0.8))
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        step = height / len(row_labels)
        ax.set_yticks([step * (i + 0.5) for i in range(len(row_labels))])
        ax.set_yticklabels(row_labels, fontsize=7)
    else:
        ax.set_yticks([])
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _interleave(a: torch.Tensor, b: torch.Tensor, per_row: int) -> torch.Tensor:
    """Rows of ``a`` and ``b`` alternating, ``per_row`` items per row."""
    rows = []
    for i in range(0, len(a), per_row):
        rows += [a[i:i + per_row], b[i:i + per_row]]
    return torch.cat(rows)


@torch.no_grad()
def save_figures(model, splits, out_dir, seed: int = 0, per_row: int = 8) -> dict[str, torch.Tensor]:
    """Write the sample grids (and the cross-modal figures when the hints ask for them).

    ``samples_given_<x2>.png`` (Figure-4 style: z_c ~ q(z_c | x2) per row, x2 = each class or one test point's
    x2), ``samples_prior.png``, ``reconstructions.png`` (odd rows test x1, even rows reconstructions from both)
    and ``reconstructions_from_<x2>.png`` (x1 from x2 only). Returns the grids ``{name: (3, H, W) tensor}``
    (e.g. for TensorBoard's ``add_image``).
    """
    from torchvision.utils import make_grid

    hints = figure_hints(splits)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    x1, x2 = model.modality_names[0], model.modality_names[1]
    shape = splits.test.shapes[x1]
    frames = shape[0] if len(shape) == 3 and shape[0] not in (1, 3) else 1
    test = splits.test.batch(torch.arange(min(len(splits.test), 32)))
    if hints["condition_on"] == "one_hot_classes":
        n_classes = int(splits.test.shapes[x2][-1])
        cond = torch.eye(n_classes).repeat_interleave(per_row, dim=0)
    else:
        cond = test[x2][:8].repeat_interleave(per_row, dim=0)
    orig = test[x1]
    pictures = {
        f"samples_given_{x2}": model.generate({x2: cond.to(device)}, n_per_input=1)[x1],
        "samples_prior": model.sample(64)[x1],
        "reconstructions": _interleave(orig, model.reconstruct(_to_device(test, device))[x1].cpu(), per_row),
        f"reconstructions_from_{x2}": _interleave(orig, model.reconstruct({x2: test[x2].to(device)})[x1].cpu(),
                                                  per_row),
    }
    if hints["condition_on"] == "one_hot_classes":
        given_rows = [f"{x2} {c}" for c in range(n_classes)]
    else:
        given_rows = [f"{x2} of test #{i}" for i in range(len(cond) // per_row)]
    n_pairs = -(-len(orig) // per_row)
    captions = {
        f"samples_given_{x2}": (f"{x1} generated from {x2}: z_c ~ q(z_c | {x2}), one row per {x2}", given_rows),
        "samples_prior": (f"{x1} generated from the prior z_c ~ N(0, I)", []),
        "reconstructions": (f"test {x1} (odd rows) and reconstructions from {x1} and {x2} (even rows)",
                            [f"test {x1}", f"from {x1}+{x2}"] * n_pairs),
        f"reconstructions_from_{x2}": (f"test {x1} (odd rows) and {x1} generated from {x2} only (even rows)",
                                       [f"test {x1}", f"from {x2} only"] * n_pairs),
    }
    grids = {}
    for name, images in pictures.items():
        grids[name] = make_grid(_grid_images(images), nrow=per_row * frames, padding=1)
        title, rows = captions[name]
        if frames > 1:
            title += f" ({frames} frames of each {x1} side by side)"
        save_titled_grid(grids[name], out_dir / f"{name}.png", f"{splits.name}: {title}", rows)
    if hints["cross_modal"]:
        save_cross_modal_figures(model, splits, out_dir, seed=seed, feature_names=hints.get("feature_names"))
    return grids


def _spread_indices(n_total: int, n: int) -> torch.Tensor:
    """``n`` test indices spread evenly over the split (consecutive points are near-identical env steps)."""
    return torch.linspace(0, n_total - 1, min(n, n_total)).round().long()


@torch.no_grad()
def save_cross_modal_figures(model, splits, out_dir, seed: int = 0, n_images: int = 8, n_sound_points: int = 500,
                             feature_names: Optional[Sequence[str]] = None) -> None:
    """Labelled cross-modal figures for image + vector datasets (the environments).

    ``cross_modal_<x1>.png``: columns are spread-out test points; rows: the true stacked frames (side by side),
    then x1 generated with one sample z_c ~ q(z_c | given) (and the modality latent from p(z | z_c)), decoded
    to its mean, given x2 only, x1 only and both. ``<x2>_from_<x1>.png``: the true x2 against x2 generated from
    x1 only (z_c ~ q(z_c | x1)) and from both: one scatter panel per feature over test points for small
    vectors (e.g. PendulumSound's Doppler frequency / amplitude per microphone, named by ``feature_names``, the
    last axis of x2), or per-channel traces of the last frame for a few test points for long signals (e.g.
    Hyperhot's waveforms).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    model.eval()
    device = next(model.parameters()).device
    x1, x2 = model.modality_names[0], model.modality_names[1]
    torch.manual_seed(seed)

    idx = _spread_indices(len(splits.test), n_images)
    test = _to_device(splits.test.batch(idx), device)
    given = {f"{x2} only": {x2: test[x2]}, f"{x1} only": {x1: test[x1]}, "both": test}
    rows = [(f"true {x1}", test[x1].cpu())]
    rows += [(f"from {name}", model.generate(b)[x1].cpu()) for name, b in given.items()]

    def tile(img: torch.Tensor) -> np.ndarray:  # (C, H, W) -> C frames side by side (grey) or RGB
        img = img.float().clamp(0, 1)
        if img.shape[0] == 3:
            return img.permute(1, 2, 0).numpy()
        sep = torch.ones(img.shape[1], 2)
        parts = []
        for c in range(img.shape[0]):
            parts += [img[c], sep] if c < img.shape[0] - 1 else [img[c]]
        return torch.cat(parts, dim=1).numpy()

    n = len(idx)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.9 * n, 1.15 * len(rows) + 0.6), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(tile(imgs[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0:
                ax.set_title(f"test #{int(idx[c])}", fontsize=8)
    fig.suptitle(f"{splits.name}: {x1} (frames side by side) generated with z_c ~ q(z_c | given), decoded mean",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / f"cross_modal_{x1}.png", dpi=80)
    plt.close(fig)

    # x2 from x1
    torch.manual_seed(seed)
    m = min(len(splits.test), n_sound_points)
    spread = _spread_indices(len(splits.test), m)
    pts = _to_device(splits.test.batch(spread), device)
    true2 = pts[x2].cpu()
    from_x1 = model.generate({x1: pts[x1]})[x2].cpu()
    from_both = model.generate(pts)[x2].cpu()
    shape = tuple(true2.shape[1:])
    n_feat = int(np.prod(shape))
    if n_feat <= 24:
        cols = shape[-1] * (shape[-2] if len(shape) >= 2 else 1)
        cols = cols if cols <= 8 else 6
        nrows = math.ceil(n_feat / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.5 * nrows), squeeze=False)
        t, a, b = true2.reshape(m, -1), from_x1.reshape(m, -1), from_both.reshape(m, -1)
        for f in range(nrows * cols):
            ax = axes[f // cols][f % cols]
            if f >= n_feat:
                ax.axis("off")
                continue
            ax.scatter(t[:, f], b[:, f], s=3, alpha=0.4, color="tab:green", label="from both")
            ax.scatter(t[:, f], a[:, f], s=3, alpha=0.5, color="tab:blue", label=f"from {x1} only")
            lo, hi = float(t[:, f].min()), float(t[:, f].max())
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            r2 = 1 - float(((a[:, f] - t[:, f]) ** 2).mean()) / max(float(t[:, f].var(unbiased=False)), 1e-12)
            pos = [int(i) for i in np.unravel_index(f, shape)]
            if feature_names and len(pos) == 3 and len(feature_names) == shape[-1]:
                label = f"frame {pos[0]}, mic {pos[1]}: {feature_names[pos[2]]}"
            else:
                label = f"{x2}{pos}"
            ax.set_title(f"{label}\nR² ({x1} only) = {r2:.2f}", fontsize=8)
            ax.tick_params(labelsize=6)
            if f % cols == 0:
                ax.set_ylabel("generated", fontsize=8)
            if f // cols == nrows - 1:
                ax.set_xlabel("true", fontsize=8)
        axes[0][0].legend(fontsize=6, markerscale=3)
        fig.suptitle(f"{splits.name}: true {x2} features vs {x2} generated from {x1} (z_c ~ q(z_c | {x1})), "
                     f"{m} test points", fontsize=9)
    else:
        ex_idx = [0, m // 2, m - 1][:m]
        chans = shape[-2] if len(shape) >= 2 else 1
        fig, axes = plt.subplots(len(ex_idx), chans, figsize=(3.2 * chans, 2.0 * len(ex_idx)), squeeze=False)
        for r, i in enumerate(ex_idx):
            last = (lambda v: v[i].reshape(-1, chans, shape[-1])[-1])
            for c in range(chans):
                ax = axes[r][c]
                ax.plot(last(true2)[c].numpy(), color="k", lw=0.6, label="true")
                ax.plot(last(from_x1)[c].numpy(), color="tab:blue", lw=0.6, alpha=0.8, label=f"from {x1} only")
                ax.plot(last(from_both)[c].numpy(), color="tab:green", lw=0.6, alpha=0.6, label="from both")
                ax.tick_params(labelsize=6)
                if r == 0:
                    ax.set_title(f"channel {c}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"test #{int(spread[i])}", fontsize=8)
        axes[0][0].legend(fontsize=6)
        fig.suptitle(f"{splits.name}: {x2} (last frame per channel), true vs generated from {x1} "
                     f"(z_c ~ q(z_c | {x1})) and from both", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / f"{x2}_from_{x1}.png", dpi=80)
    plt.close(fig)



def learning_curve_panels(history: Sequence[Mapping]) -> list[tuple[str, list[str]]]:
    """The panels of ``learning_curves.png``: (title, history keys), empty panels left out."""
    keys = sorted({k for r in history for k in r if k.startswith("train/")})
    legacy = [k for k in LEGACY_SCHEDULE_KEYS if k in keys]
    panels = [
        ("objective", [k for k in ("train/loss", "train/elbo", "valid/elbo") if any(k in r for r in history)]),
        ("reconstruction log-likelihood", [k for k in keys if k.startswith("train/rec/")]),
        ("KL", [k for k in keys if k.startswith("train/kl") and k not in legacy]),
        ("warm-up weights", [k for k in keys if k.startswith("train/schedule/")] + legacy),
    ]
    return [(t, ks) for t, ks in panels if ks]


def plot_learning_curves(history: Sequence[Mapping], path) -> None:
    """One panel per group of :func:`learning_curve_panels`, against the epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    panels = learning_curve_panels(history)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, ks) in zip(axes[0], panels):
        for k in ks:
            ax.plot(epochs, [r.get(k, float("nan")) for r in history], marker="." if len(epochs) < 30 else None,
                    label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
