"""Linear probes of the running sum: where, if anywhere, a model computes what the middle digits need.

Bai et al. 2025 (arXiv 2510.00184, Sec. 3.2) read a multiplication model by regressing, from the hidden
state that predicts answer digit k, the running sum ``c_k = sum_{i+j=k} a_i b_j + floor(c_{k-1} / 10)``
(``terms.running_sums``): a model that solves the task has it linearly decodable where the middle digits
are produced; one that fails does not. For every layer L0..LN and every answer position k:

* the states: the run's own format (question, pause block, answer), teacher-forced as in training, the
  state at the position that predicts answer digit k (``terms.answer_positions``);
* the probe: ridge regression in closed form, ``w = (Xc^T Xc + lambda n I)^-1 Xc^T yc`` on centred
  features and targets (an intercept, unpenalised), fit on the first ``fit_fraction`` of the problems;
* the score: R^2 on the remaining, held-out problems, ``1 - SS_res / SS_tot`` (may be negative: worse
  than predicting the held-out mean).

Written as ``probe.json`` (every R^2, the settings), ``probe.csv`` and ``probe.png`` (a heat map).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seqvcr.atomic import write_json_atomic, write_text_atomic
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError, DataError
from seqvcr.reporting.figures import new_figure, save_figure
from seqvcr.reporting.tables import csv_text
from seqvcr.runfiles import PROBE_CSV, PROBE_JSON, PROBE_PNG
from seqvcr.runs import load_run, select_device
from seqvcr.sequences import encode_examples, make_batch
from seqvcr.tasks import read_examples
from seqvcr.terms import answer_positions, running_sum_targets


def ridge_r2(x_fit: torch.Tensor, y_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
             lam: float) -> float:
    """Held-out R^2 of a ridge regression of ``y`` (n,) on ``x`` (n, d) in closed form (float64); the
    penalty ``lam * n_fit`` on the weights makes ``lam`` independent of the number of fitted problems."""
    x_fit, y_fit = x_fit.double(), y_fit.double()
    x_test, y_test = x_test.double(), y_test.double()
    mx, my = x_fit.mean(0), y_fit.mean()
    xc, yc = x_fit - mx, y_fit - my  # (n, d), (n,)
    d = xc.shape[1]
    gram = xc.T @ xc + lam * xc.shape[0] * torch.eye(d, dtype=xc.dtype)  # (d, d)
    w = torch.linalg.solve(gram, xc.T @ yc)  # (d,)
    pred = (x_test - mx) @ w + my  # (m,)
    ss_res = ((y_test - pred) ** 2).sum()
    ss_tot = ((y_test - y_test.mean()) ** 2).sum()
    return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


@torch.no_grad()
def answer_states(run: Any, examples: list[Any], batch_size: int, device: torch.device) -> torch.Tensor:
    """(n_layers, n, A, d) hidden states that predict each answer digit, teacher-forced."""
    data = encode_examples(run.fmt, examples, where="probe").to(device)
    width = run.task.max_answer_length()
    model = run.model.to(device).eval()
    chunks = []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)), device=device)
        x, _, mask = make_batch(data, rows)  # (B, T) each
        hidden = model(x, output_hidden_states=True).hidden_states  # n_layers x (B, T, d)
        pos = answer_positions(mask, width)  # (B, A)
        idx = pos[:, :, None].expand(-1, -1, hidden[0].shape[-1])  # (B, A, d)
        chunks.append(torch.stack([torch.gather(h.float(), 1, idx) for h in hidden]).cpu())  # (L, B, A, d)
    return torch.cat(chunks, dim=1)


def probe_run(run_dir: str | Path, data_file: str | Path, *, limit: int = 0, fit_fraction: float = 0.7,
              lam: float = 1e-2, batch_size: int = 256, device: str = "cpu",
              step: int | None = None) -> dict[str, Any]:
    """R^2 of the running sum per layer and answer position (module docstring); the result dict."""
    if not 0.0 < fit_fraction < 1.0:
        raise ConfigError(f"--fit-fraction: must be in (0, 1), got {fit_fraction}")
    if lam <= 0:
        raise ConfigError(f"--ridge: must be > 0, got {lam}")
    run = load_run(run_dir, step=step)
    if run.task.name != "mult":
        raise ConfigError(f"{run_dir}: the running-sum probe needs a multiplication run, not "
                          f"{run.task.name!r}")
    path = resolve_data_path(data_file)
    examples = read_examples(run.task, path)
    if limit:
        examples = examples[:limit]
    n_fit = int(round(fit_fraction * len(examples)))
    if n_fit < 2 or len(examples) - n_fit < 2:
        raise DataError(f"{data_file}: {len(examples)} problems are too few to fit and score a probe")
    states = answer_states(run, examples, batch_size, select_device(device))  # (L, n, A, d)
    targets = running_sum_targets(run.task, examples)  # (n, A)
    n_layers, _, width, _ = states.shape
    fit, test = slice(0, n_fit), slice(n_fit, None)
    r2 = [[ridge_r2(states[layer, fit, k], targets[fit, k], states[layer, test, k], targets[test, k], lam)
           for k in range(width)] for layer in range(n_layers)]
    return {
        "run_dir": str(run_dir),
        "step": run.step,
        "method": run.config.method.name,
        "data": str(data_file),
        "n_fit": n_fit,
        "n_test": len(examples) - n_fit,
        "ridge": lam,
        "target": "running sum c_k (Bai et al. 2025, Sec. 3.2), answer digit k = c_k mod 10",
        "layers": [f"L{i}" for i in range(n_layers)],
        "r2": r2,  # [layer][answer position k], positions counted from 1 in tables
    }


def write_probe(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``probe.json``, ``probe.csv`` and ``probe.png`` in ``out``; their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    width = len(result["r2"][0])
    header = ["layer", *[f"position {k + 1}" for k in range(width)]]
    rows = [[name, *[f"{v:.4f}" for v in vals]]
            for name, vals in zip(result["layers"], result["r2"], strict=True)]
    paths = {"json": out / PROBE_JSON, "csv": out / PROBE_CSV, "png": out / PROBE_PNG}
    write_json_atomic(paths["json"], result)
    write_text_atomic(paths["csv"], csv_text(header, rows))
    fig = new_figure((1.2 + 0.8 * width, 1.0 + 0.5 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(torch.tensor(result["r2"]).clamp(min=0).numpy(), vmin=0.0, vmax=1.0, cmap="viridis",
                   aspect="auto")
    for i, vals in enumerate(result["r2"]):
        for k, v in enumerate(vals):
            color = "white" if v < 0.6 else "black"
            ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(width), [str(k + 1) for k in range(width)])
    ax.set_yticks(range(len(rows)), result["layers"])
    ax.set_xlabel("answer position (least significant first)")
    ax.set_title(f"Running-sum probe R² (held-out), {Path(result['run_dir']).name}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    save_figure(fig, paths["png"])
    return paths
