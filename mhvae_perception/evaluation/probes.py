"""A cheap predictor of cross-modal transfer: probes from core latents to an environment's true state.

An agent trained on z_c = mean of q(z_c | image) acts at test time on z_c = mean of q(z_c | sound). It can only
succeed if (a) each latent holds the state the task needs and (b) a read-out fitted on one sensor's latents also
reads the other sensor's latents. Both are measured here before any agent is trained:

* **within**: held-out R² of a probe (linear least squares, and a small MLP) predicting each state variable from
  the latents of one condition (one modality, or all of them), fitted on the training split, scored on the test split;
* **transfer**: the same probe fitted on the training latents of modality a and scored on the test latents of
  modality b (transfer in miniature: a fails where b's latents live elsewhere);
* **active dimensions** of z_c: dimensions whose posterior mean varies over the data, Cov_x(E_q[z_d]) > 0.01
  (Burda et al. 2016), from q(z_c | all modalities) on the test split.

``transfer_score`` summarises the transfer cells: the mean over directions and state variables of R² clipped to
[-1, 1] (R² is unbounded below; one hopeless variable should not hide everything else).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..models.base import MultimodalVAE

ACTIVE_THRESHOLD = 0.01
PROBE_KINDS = ("linear", "mlp")


# ----------------------------------------------------------------------------------------- latents
def condition_name(subset: Sequence[str]) -> str:
    """``("image", "sound")`` -> ``"image+sound"``."""
    return "+".join(subset)


def conditions(model: MultimodalVAE) -> dict[str, tuple[str, ...]]:
    """Each single modality, then all modalities together: ``{name: subset}``."""
    names = model.modality_names
    out = {n: (n,) for n in names}
    out[condition_name(names)] = tuple(names)
    return out


@torch.no_grad()
def posterior_means(model: MultimodalVAE, dataset, subsets: Mapping[str, Sequence[str]], limit: int | None = None,
                    batch_size: int = 512) -> dict[str, np.ndarray]:
    """Mean of q(z_c | subset) for the first ``limit`` items of ``dataset`` (a DictTensorDataset), per subset."""
    out: dict[str, list[np.ndarray]] = {c: [] for c in subsets}
    for batch in dataset.iter_batches(batch_size, limit=limit):
        for cond, subset in subsets.items():
            mu, _ = model.encode({n: batch[n] for n in subset})
            out[cond].append(mu.float().cpu().numpy())
    return {c: np.concatenate(v) for c, v in out.items()}


def active_dimensions(means: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions whose posterior mean has variance > ``threshold`` over the data."""
    return int((np.var(means, axis=0) > threshold).sum())


# ----------------------------------------------------------------------------------------- probes
def r2_scores(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column: 1 - SSE / SST (SST about the target's own mean)."""
    sse = ((pred - target) ** 2).sum(0)
    sst = ((target - target.mean(0)) ** 2).sum(0)
    return 1.0 - sse / np.maximum(sst, 1e-12)


class LinearProbe:
    """Least squares on [z, 1] with a tiny ridge (stable when latent dimensions are collapsed)."""

    def __init__(self, ridge: float = 1e-6) -> None:
        self.ridge = ridge
        self.weights: np.ndarray | None = None

    @staticmethod
    def _features(z: np.ndarray) -> np.ndarray:
        return np.concatenate([z.astype(np.float64), np.ones((len(z), 1))], axis=1)

    def fit(self, z: np.ndarray, y: np.ndarray) -> "LinearProbe":
        f = self._features(z)
        gram = f.T @ f + self.ridge * len(f) * np.eye(f.shape[1])
        self.weights = np.linalg.solve(gram, f.T @ y.astype(np.float64))
        return self

    def predict(self, z: np.ndarray) -> np.ndarray:
        return self._features(z) @ self.weights


class MLPProbe:
    """A small MLP (2 x 64, ReLU) trained full-batch with Adam on standardised inputs and targets."""

    def __init__(self, hidden: int = 64, steps: int = 600, lr: float = 1e-2, weight_decay: float = 1e-4,
                 seed: int = 0) -> None:
        self.hidden, self.steps, self.lr, self.weight_decay, self.seed = hidden, steps, lr, weight_decay, seed
        self.net: nn.Module | None = None

    def fit(self, z: np.ndarray, y: np.ndarray) -> "MLPProbe":
        gen = torch.Generator().manual_seed(self.seed)
        self.z_mean, self.z_std = z.mean(0), z.std(0) + 1e-6
        self.y_mean, self.y_std = y.mean(0), y.std(0) + 1e-6
        x = torch.as_tensor((z - self.z_mean) / self.z_std, dtype=torch.float32)
        t = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        self.net = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden),
                                 nn.ReLU(), nn.Linear(self.hidden, t.shape[1]))
        with torch.no_grad():
            for p in self.net.parameters():  # seeded init, independent of the global RNG
                p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=gen) / math.sqrt(max(1, p.shape[-1])))
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        with torch.enable_grad():
            for _ in range(self.steps):
                opt.zero_grad()
                loss = ((self.net(x) - t) ** 2).mean()
                loss.backward()
                opt.step()
        return self

    @torch.no_grad()
    def predict(self, z: np.ndarray) -> np.ndarray:
        x = torch.as_tensor((z - self.z_mean) / self.z_std, dtype=torch.float32)
        return self.net(x).numpy().astype(np.float64) * self.y_std + self.y_mean


def make_probe(kind: str, seed: int = 0):
    if kind == "linear":
        return LinearProbe()
    if kind == "mlp":
        return MLPProbe(seed=seed)
    raise ValueError(f"unknown probe kind {kind!r}; choose one of {PROBE_KINDS}")


def probe_scores(train_latents: Mapping[str, np.ndarray], test_latents: Mapping[str, np.ndarray],
                 train_state: np.ndarray, test_state: np.ndarray, state_names: Sequence[str],
                 single: Sequence[str], kinds: Sequence[str] = PROBE_KINDS, seed: int = 0) -> dict:
    """R² of probes within each condition and across the single-modality conditions ``single``.

    ``train_latents[c]`` / ``test_latents[c]``: (N, d) latents of condition c, rows aligned with the states.
    Returns ``{"within": {kind: {cond: {var: r2}}}, "transfer": {kind: {"a->b": {var: r2}}},
    "transfer_score": {kind: float}}``.
    """
    names = list(state_names)
    within: dict = {}
    transfer: dict = {}
    score: dict = {}
    for kind in kinds:
        within[kind], transfer[kind] = {}, {}
        fitted = {}
        for cond in train_latents:
            fitted[cond] = make_probe(kind, seed).fit(train_latents[cond], train_state)
            r2 = r2_scores(fitted[cond].predict(test_latents[cond]), test_state)
            within[kind][cond] = dict(zip(names, map(float, r2)))
        cells = []
        for a in single:
            for b in single:
                if a == b:
                    continue
                r2 = r2_scores(fitted[a].predict(test_latents[b]), test_state)
                transfer[kind][f"{a}->{b}"] = dict(zip(names, map(float, r2)))
                cells += list(np.clip(r2, -1.0, 1.0))
        score[kind] = float(np.mean(cells)) if cells else float("nan")
    return {"within": within, "transfer": transfer, "transfer_score": score}


# ----------------------------------------------------------------------------------------- report
def transfer_probes(model: MultimodalVAE, splits, out_dir: str | Path | None = None, seed: int = 0, writer=None,
                    max_train: int = 10_000, max_test: int = 5_000, kinds: Sequence[str] = PROBE_KINDS) -> dict:
    """The probe report of ``model`` on a dataset with a true state (``splits.state``, ``splits.state_names``).

    Writes ``probes.json``, ``probes.md`` and ``probes.png`` to ``out_dir`` when given, and scalars and the figure
    to the TensorBoard ``writer`` when given. Returns the report dict.
    """
    state = getattr(splits, "state", None)
    if not state:
        raise ValueError(f"{getattr(splits, 'name', 'dataset')} has no true state: collect the environment dataset "
                         f"again with an env that returns info['state'] (see docs/ENVS.md)")
    names = tuple(getattr(splits, "state_names", ()) or (f"s{i}" for i in range(state["train"].shape[1])))
    conds = conditions(model)
    single = list(model.modality_names)
    n_train, n_test = min(max_train, len(splits.train)), min(max_test, len(splits.test))
    was = model.training
    model.eval()
    try:
        z_train = posterior_means(model, splits.train, conds, n_train)
        z_test = posterior_means(model, splits.test, conds, n_test)
    finally:
        model.train(was)
    y_train = np.asarray(state["train"][:n_train], dtype=np.float64)
    y_test = np.asarray(state["test"][:n_test], dtype=np.float64)
    report = {"state_names": list(names), "points": {"train": n_train, "test": n_test},
              "active_dims": {c: active_dimensions(z) for c, z in z_test.items()},
              "latent_dim": int(next(iter(z_test.values())).shape[1])}
    report.update(probe_scores(z_train, z_test, y_train, y_test, names, single, kinds, seed))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "probes.json").write_text(json.dumps(report, indent=2))
        (out_dir / "probes.md").write_text(markdown_table(report) + "\n")
        fig = plot_probes(report)
        fig.savefig(out_dir / "probes.png", dpi=90)
        if writer is not None:
            writer.add_figure("probes/r2", fig)
        import matplotlib.pyplot as plt
        plt.close(fig)
    if writer is not None:
        for kind in report["within"]:
            for section in ("within", "transfer"):
                for cond, per_var in report[section][kind].items():
                    for var, value in per_var.items():
                        writer.add_scalar(f"probes/{kind}/{section}/{cond}/{var}", value)
            writer.add_scalar(f"probes/{kind}/transfer_score", report["transfer_score"][kind])
        for cond, k in report["active_dims"].items():
            writer.add_scalar(f"probes/active_dims/{cond}", k)
    return report


def _cell(per_var: Mapping[str, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in per_var.values())


def markdown_table(report: Mapping) -> str:
    """One row per probe kind: R² per state variable (``a / b / c`` in ``state_names`` order) per column."""
    within_conds = list(next(iter(report["within"].values())))
    transfer_cells = list(next(iter(report["transfer"].values())))
    head = ([f"from {c}" for c in within_conds] + [f"{c.split('->')[0]} probe on {c.split('->')[1]} latents"
                                                    for c in transfer_cells])
    lines = [f"R² on {report['points']['test']} held-out points (probes fitted on {report['points']['train']}); "
             f"each cell: {' / '.join(report['state_names'])}. Active z_c dimensions (of {report['latent_dim']}): "
             + ", ".join(f"{c} {k}" for c, k in report["active_dims"].items()) + ".",
             "",
             "| probe | " + " | ".join(head) + " | transfer score |",
             "|---|" + "---|" * (len(head) + 1)]
    for kind in report["within"]:
        cells = [_cell(report["within"][kind][c]) for c in within_conds]
        cells += [_cell(report["transfer"][kind][c]) for c in transfer_cells]
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {report['transfer_score'][kind]:.2f} |")
    return "\n".join(lines)


def plot_probes(report: Mapping):
    """Grouped bars: R² (clipped at -1) per state variable, for each within / transfer cell and probe kind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(report["within"])
    names = report["state_names"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        cells = {**{f"from {c}": v for c, v in report["within"][kind].items()},
                 **{c.replace("->", " probe\non "): v for c, v in report["transfer"][kind].items()}}
        width = 0.8 / max(1, len(names))
        x = np.arange(len(cells))
        for j, var in enumerate(names):
            ax.bar(x + j * width, [max(-1.0, v[var]) for v in cells.values()], width, label=var)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x + width * (len(names) - 1) / 2)
        ax.set_xticklabels(list(cells), fontsize=7)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("held-out R² (clipped at -1)")
        ax.set_title(f"{kind} probe; transfer score {report['transfer_score'][kind]:.2f}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
