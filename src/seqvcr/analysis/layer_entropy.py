"""Layer-wise representation entropy of a trained run (the paper's collapse measurement, Sec. 3.3).

For every hidden state L0..LN (L0 = embeddings, LN = after the final LayerNorm, as ``seqvcr.model``
returns them) and every sequence of a fixed sample:

* **per-sequence entropy** (Eq. 2): ``seqvcr.entropy.matrix_entropy`` of that sequence's T token
  representations Z (T x d, raw Gram K = Z Z^T, nats; alpha = 1 is von Neumann); over the sequences:
  mean, std, a 95% CI (``seqvcr.reporting.stats.describe``) and the histogram of Fig. 4;
* **dataset-level entropy**: of the n per-sequence mean vectors (how spread the sequences are from each
  other, where the above is how spread one sequence's tokens are).

Per-sequence entropy is at most log(min(T, d)), so longer sequences (pauses, a chain of thought) have a
higher ceiling: each layer also gives ``mean_normalized`` (mean of entropy / log(min(T, d))) and
``dataset_normalized`` (/ log(min(n, d))); ``normalize=True`` divides every value so.

T counts every real token of the teacher-forced training sequence except the final ``<eos>`` (never an
input), no padding. The sample is the whole file when it has at most ``n_sequences`` lines, else
``n_sequences`` lines drawn without replacement with ``seed`` (None: the first lines), in file order;
the result keeps their indices.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from seqvcr import outputs
from seqvcr.atomic import write_json_atomic, write_text_atomic
from seqvcr.datafiles import resolve_data_path
from seqvcr.entropy import matrix_entropy
from seqvcr.errors import ConfigError, DataError
from seqvcr.model import GPT
from seqvcr.outputs import ENTROPY_CSV, ENTROPY_JSON, ENTROPY_VALUES_CSV
from seqvcr.progress import ProgressBar
from seqvcr.reporting.stats import describe
from seqvcr.reporting.tables import csv_text
from seqvcr.runs import LoadedRun, data_note, load_run, select_device
from seqvcr.sequences import EncodedData, encode_examples
from seqvcr.tasks import read_examples

__all__ = ["ENTROPY_CSV", "ENTROPY_JSON", "ENTROPY_VALUES_CSV", "compute_layer_entropy", "sample_indices",
           "write_entropy"]


def sample_indices(total: int, n: int | None, seed: int | None) -> list[int]:
    """The line indices (0-based, ascending) of the fixed sample: all lines when ``n`` is None or >= total,
    else ``n`` lines drawn without replacement with ``seed`` (the first ``n`` when ``seed`` is None)."""
    if n is None or n >= total:
        return list(range(total))
    if n < 1:
        raise ConfigError(f"n_sequences: expected an integer >= 1, got {n}")
    if seed is None:
        return list(range(n))
    g = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(total, generator=g)[:n].tolist())


def _read_sample(loaded: LoadedRun, data_file: str | os.PathLike[str], n_sequences: int,
                 seed: int | None) -> tuple[Path, int, list[int], EncodedData]:
    """Read ``data_file`` (a warning when it is not like the run's data), draw the fixed sample and encode
    it; returns the resolved path, the file's line count, the chosen line indices and the sample."""
    data_path = resolve_data_path(data_file)
    examples = read_examples(loaded.task, data_path)
    note = data_note(loaded.task, examples, data_file)
    if note:
        print(f"warning: {note}; measuring it as it is", file=sys.stderr)
    indices = sample_indices(len(examples), n_sequences, seed)
    data = encode_examples(loaded.fmt, [examples[i] for i in indices], where=str(data_file))
    block_size = loaded.model.config.block_size
    if data.max_length > block_size:
        raise DataError(
            f"{data_file}: sequences of {data.max_length} tokens exceed the model's {block_size} positions"
        )
    return data_path, len(examples), indices, data


def _measure_sequences(model: GPT, ids: torch.Tensor, lengths: list[int], batch_size: int, alpha: float,
                       normalize: bool, bar: ProgressBar) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the sample (``ids``: (n, max_len)) teacher-forced in batches; for every hidden state the entropy
    of each sequence's first ``lengths[i]`` tokens (n_layers, n) and their mean vector (n_layers, n, d)."""
    n = len(lengths)
    n_layers = model.config.n_layer + 1  # L0 (embeddings) .. LN
    dev = next(model.parameters()).device
    per_seq = torch.zeros(n_layers, n, dtype=torch.float64)
    seq_means = torch.zeros(n_layers, n, model.config.n_embd, dtype=torch.float64)
    for start in range(0, n, batch_size):
        rows = list(range(start, min(n, start + batch_size)))
        width = max(lengths[r] for r in rows)
        x = ids[rows, :width].to(dev)  # (B, width)
        out = model(x, output_hidden_states=True)
        assert out.hidden_states is not None
        by_len: dict[int, list[int]] = defaultdict(list)  # sequences of equal length share one batched call
        for j, r in enumerate(rows):
            by_len[lengths[r]].append(j)
        for layer, h in enumerate(out.hidden_states):
            h = h.detach().to(torch.float64)  # (B, width, d)
            for t_len, members in by_len.items():
                z = h[members, :t_len]  # (b, T, d): real tokens only
                ent = matrix_entropy(z, alpha, normalize=normalize).cpu()  # (b,)
                idx = torch.tensor([rows[j] for j in members])
                per_seq[layer, idx] = ent
                seq_means[layer, idx] = z.mean(1).cpu()  # (b, d): one vector per sequence
        bar.update(len(rows))
    return per_seq, seq_means


def _layer_summaries(per_seq: torch.Tensor, dataset: torch.Tensor, lengths: list[int], d: int,
                     normalize: bool) -> list[dict[str, Any]]:
    """One dict per hidden state: statistics of ``per_seq`` (n_layers, n) and ``dataset`` (n_layers,),
    raw and normalised by their rank bounds, so that runs of different lengths compare."""
    n_layers, n = per_seq.shape
    if normalize:
        normed, dataset_normed = per_seq, dataset
    else:
        # log of each sequence's rank bound: turns raw entropies into normalised ones
        bound = torch.tensor([math.log(min(t, d)) if min(t, d) > 1 else float("nan") for t in lengths],
                             dtype=torch.float64)  # (n,)
        normed = torch.nan_to_num(per_seq / bound, nan=0.0)  # (n_layers, n)
        dataset_normed = dataset / math.log(min(n, d)) if min(n, d) > 1 else torch.zeros_like(dataset)
    layers: list[dict[str, Any]] = []
    for layer in range(n_layers):
        values = per_seq[layer].tolist()
        layers.append({"layer": layer, "name": f"L{layer}", **describe(values),
                       "mean_normalized": float(normed[layer].mean()), "dataset": float(dataset[layer]),
                       "dataset_normalized": float(dataset_normed[layer]), "values": values})
    return layers


def _metadata(loaded: LoadedRun, data_file: str | os.PathLike[str], indices: list[int], file_lines: int,
              seed: int | None, alpha: float, normalize: bool, lengths: list[int]) -> dict[str, Any]:
    """What was measured and how (the result's fields before ``layers``), enough to reproduce it."""
    n = len(indices)
    sample = "the whole file" if n == file_lines else (
        f"its first {n} lines" if seed is None else f"a random sample of {n} lines, seed {seed}")
    return {
        "run_dir": str(loaded.run_dir), "data": str(data_file), "task": loaded.task.describe(),
        "method": loaded.config.method.name, "step": loaded.step, "n": n, "file_lines": file_lines,
        "sample": sample, "seed": seed, "indices": indices, "alpha": alpha, "normalized": normalize,
        "units": "fraction of log(min(T, d))" if normalize else "nats",
        "tokens": "every real token of the teacher-forced training sequence except the final <eos>",
        "tokens_per_sequence": {"min": min(lengths), "max": max(lengths)},
        "n_embd": loaded.model.config.n_embd, "n_layer": loaded.model.config.n_layer,
        "dataset_level": "entropy of the n per-sequence mean vectors (mean over each sequence's tokens)",
        "ci": "95% normal approximation, mean +- 1.96 * std / sqrt(n), std with n - 1",
    }


@torch.no_grad()
def compute_layer_entropy(run: str | os.PathLike[str] | LoadedRun, data_file: str | os.PathLike[str],
                          n_sequences: int | None = 1000, seed: int | None = 0, batch_size: int = 256,
                          alpha: float = 1.0, normalize: bool = False, device: str = "cpu",
                          progress: bool = False, step: int | None = None) -> dict[str, Any]:
    """Per-sequence and dataset-level matrix entropy of every layer (module docstring) of ``run``, a run
    directory (``step``: its snapshot of that step) or a loaded run, on ``data_file`` (``ref:...``: a
    shipped file); ``n_sequences`` None means 1000. A JSON-able dict: ``layers`` (per hidden state its
    statistics, the per-sequence ``values`` in sample order and the ``dataset`` entropy), the metadata to
    reproduce it, and its ``source`` (``seqvcr.outputs``) when the weights came from a file."""
    t0 = time.perf_counter()
    if n_sequences is None:
        n_sequences = 1000
    dev = select_device(device) if isinstance(device, str) else device
    loaded = run if isinstance(run, LoadedRun) else load_run(run, device=dev, step=step)
    model = loaded.model
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    data_path, file_lines, indices, data = _read_sample(loaded, data_file, n_sequences, seed)
    n = len(indices)
    # T_i: every real token except the final <eos> (never an input); at least one token
    lengths = (data.lengths - 1).clamp(min=1).tolist()
    bar = ProgressBar(n, "entropy", unit="sequences", enabled=progress)
    per_seq, seq_means = _measure_sequences(model, data.ids, lengths, batch_size, alpha, normalize, bar)
    bar.close()
    dataset = matrix_entropy(seq_means, alpha, normalize=normalize)  # (n_layers,)
    model.train(was_training)
    layers = _layer_summaries(per_seq, dataset, lengths, model.config.n_embd, normalize)
    result = _metadata(loaded, data_file, indices, file_lines, seed, alpha, normalize, lengths)
    result.update(layers=layers, seconds=time.perf_counter() - t0, device=str(dev), n_requested=n_sequences)
    if loaded.weights is not None:
        result["source"] = outputs.source(loaded.run_dir, loaded.weights, loaded.step, str(data_file),
                                          data_path)
    return result


def entropy_csv(result: dict[str, Any]) -> str:
    """One row per layer: summary statistics and the dataset-level entropy."""
    header = ["layer", "name", "n", "mean", "std", "ci95_low", "ci95_high", "median", "dataset_entropy"]
    return csv_text(header, [[L["layer"], L["name"], L["n"], L["mean"], L["std"], L["ci95"][0], L["ci95"][1],
                              L.get("median", ""), L["dataset"]] for L in result["layers"]])


def values_csv(result: dict[str, Any]) -> str:
    """Long format, one row per (sequence, layer): the whole distribution, for histograms elsewhere."""
    rows = [[line, L["layer"], repr(float(v))] for L in result["layers"]
            for line, v in zip(result["indices"], L["values"])]
    return csv_text(["line", "layer", "entropy"], rows)


def write_entropy(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``entropy.json`` (everything), ``entropy.csv`` (per layer) and ``entropy_values.csv``
    (per sequence and layer) into ``out_dir``, each atomically. Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / ENTROPY_JSON, "csv": out / ENTROPY_CSV, "values_csv": out / ENTROPY_VALUES_CSV}
    write_json_atomic(paths["json"], result)
    write_text_atomic(paths["csv"], entropy_csv(result))
    write_text_atomic(paths["values_csv"], values_csv(result))
    return paths


def brief(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the per-sequence values and indices (what the command prints)."""
    out = {k: v for k, v in result.items() if k not in ("layers", "indices")}
    out["layers"] = [{k: v for k, v in L.items() if k != "values"} for L in result["layers"]]
    return out
