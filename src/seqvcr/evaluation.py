"""Exact match by greedy decoding (the paper's metric), accuracy per answer position, throughput.

Examples are grouped by prompt length so every batch decodes with one shared KV cache and no attention
mask; within a group, batches of ``batch_size`` are decoded greedily until every row has emitted the
end token or the decoding budget is spent. The budget is the longest target the task can have in the
run's format (``SequenceFormat.max_new_tokens``), never a property of the batch or of the reference
answers, so a prompt gives the same output and score at any batch size. An answer counts only when
``<eos>`` closes it (``SequenceFormat.extract_answer``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqvcr import outputs
from seqvcr.atomic import check_output_path, write_json_atomic, write_text_atomic
from seqvcr.datafiles import resolve_data_path
from seqvcr.errors import ConfigError, DataError
from seqvcr.model import GPT
from seqvcr.progress import ProgressBar
from seqvcr.runs import LoadedRun, autocast, data_note, load_run, precision_used, select_device
from seqvcr.sequences import EncodedData, SequenceFormat, encode_examples
from seqvcr.tasks import read_examples


@dataclass
class EvalResult:
    """Scores of one evaluation: the fraction of exact answers, and per answer position k (in the file's
    order; least significant digit first for multiplication) the fraction whose k-th token is right."""

    exact_match: float
    position_accuracy: list[float]
    n: int
    seconds: float
    examples_per_s: float
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        keys = ("exact_match", "n", "position_accuracy", "examples_per_s", "seconds")  # all but predictions
        return {k: getattr(self, k) for k in keys}


@torch.no_grad()
def generate_continuations(
    model: GPT, data: EncodedData, fmt: SequenceFormat, batch_size: int = 256, precision: str = "auto",
    max_new_tokens: int | None = None, on_batch: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Greedy continuation of every prompt in ``data`` (token strings, cut at the first <eos>).

    Each row decodes at most ``max_new_tokens`` tokens (default: ``fmt.max_new_tokens()``), fewer only
    where the model's positions run out (``block_size - prompt length + 1``). ``on_batch(k)`` is called
    after each batch of ``k`` examples (a progress bar).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[list[str]] = [[] for _ in range(len(data))]
    prompt_lengths = data.prompt_lengths.tolist()
    limit = max_new_tokens if max_new_tokens is not None else fmt.max_new_tokens()
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompt_lengths):
        groups.setdefault(p, []).append(i)
    eos = fmt.tokenizer.eos_id
    for p, members in sorted(groups.items()):
        for start in range(0, len(members), batch_size):
            rows = members[start : start + batch_size]
            idx = torch.tensor(rows, dtype=torch.long, device=data.ids.device)
            prompt = data.ids[idx, :p].to(device)  # (B, p)
            budget = min(limit, model.config.block_size - p + 1)  # the same for every batch of this p
            with autocast(device, precision):
                gen = model.generate(prompt, budget, eos_id=eos)  # (B, budget)
            for r, row in zip(rows, gen.tolist()):
                if eos in row:
                    row = row[: row.index(eos) + 1]
                out[r] = fmt.tokenizer.decode(row)
            if on_batch is not None:
                on_batch(len(rows))
    model.train(was_training)
    return out


def score(
    fmt: SequenceFormat, continuations: Sequence[Sequence[str]], answers: Sequence[Sequence[str]]
) -> tuple[float, list[float], list[dict[str, Any]]]:
    """Exact match, accuracy per answer position (of answers closed by ``<eos>``, as ``extract_answer``
    reads them), and one prediction record per example (``closed``: whether ``<eos>`` was produced)."""
    n = len(answers)
    width = max((len(a) for a in answers), default=0)
    hits = [0] * width
    counts = [0] * width
    correct_total = 0
    records: list[dict[str, Any]] = []
    eos = fmt.tokenizer.tokens[fmt.tokenizer.eos_id]
    for cont, gold in zip(continuations, answers):
        pred = fmt.extract_answer(cont)
        correct = list(pred) == list(gold)
        correct_total += correct
        for k, g in enumerate(gold):
            counts[k] += 1
            hits[k] += k < len(pred) and pred[k] == g
        records.append({"target": " ".join(gold), "prediction": " ".join(pred), "correct": bool(correct),
                        "closed": eos in cont, "output": " ".join(cont)})
    pos_acc = [h / c if c else 0.0 for h, c in zip(hits, counts)]
    return (correct_total / n if n else 0.0), pos_acc, records


def evaluate(
    model: GPT, fmt: SequenceFormat, data: EncodedData, batch_size: int = 256, precision: str = "auto",
    on_batch: Callable[[int], None] | None = None,
) -> EvalResult:
    """Greedy-decode every example of ``data`` and score it against the reference answers
    (``on_batch``: see ``generate_continuations``)."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    conts = generate_continuations(model, data, fmt, batch_size, precision, on_batch=on_batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    em, pos, records = score(fmt, conts, data.answers)
    per_s = len(data) / seconds if seconds > 0 else float("inf")
    return EvalResult(em, pos, len(data), seconds, per_s, predictions=records)


def _check_eval_options(batch_size: int, limit: int, predictions: str | None) -> None:
    """Refuse a bad ``batch_size`` or ``limit``, or an unwritable ``predictions`` path, before any work."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"--batch-size: expected an integer >= 1, got {batch_size!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"--limit: expected an integer >= 0 (0: every example), got {limit!r}")
    if predictions:
        check_output_path(predictions, "--predictions", directory=False)


def _read_eval_data(
    run: LoadedRun, data_file: str, limit: int, dev: torch.device
) -> tuple[Path, str | None, EncodedData]:
    """The first ``limit`` examples (0: all) of ``data_file``, read with the run's task, encoded on ``dev``;
    with the resolved path and the ``data_note`` (also a warning) when the file is not like the task."""
    data_path = resolve_data_path(data_file)
    examples = read_examples(run.task, data_path)
    if limit:
        examples = examples[:limit]
    note = data_note(run.task, examples, data_file)
    if note:
        print(f"warning: {note}; scoring it as it is", file=sys.stderr)
    data = encode_examples(run.fmt, examples, where=str(data_file)).to(dev)
    if data.max_length > run.model.config.block_size:
        raise DataError(f"{data_file}: sequences of {data.max_length} tokens exceed the model's "
                        f"{run.model.config.block_size} positions")
    return data_path, note, data


def _save_in_run(
    summary: dict[str, Any], lines: list[str], run_dir: str, step: int | None, data_path: Path, limit: int
) -> None:
    """Keep the evaluation in the run directory (``HOME/eval/``) for ``seqvcr report``, noting it in
    ``summary``; skipped with a warning where the directory cannot be written."""
    home = outputs.analysis_home(run_dir, step)
    where = home if home.exists() else home.parent
    if not os.access(where, os.W_OK | os.X_OK):
        print(f"warning: {where} is not writable; the evaluation is not saved in the run directory",
              file=sys.stderr)
        return
    name = outputs.eval_name(data_path, limit)
    target = home / outputs.EVAL_DIR
    target.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target / f"{name}.predictions.jsonl", "".join(lines))
    summary["predictions_file"] = f"{name}.predictions.jsonl"
    write_json_atomic(target / f"{name}.json", summary)
    summary["saved"] = str(target / f"{name}.json")


def evaluate_file(
    run_dir: str, data_file: str, *, predictions: str | None = None, batch_size: int = 256, limit: int = 0,
    device: str = "auto", step: int | None = None, progress: bool = False, save: bool = False,
) -> dict[str, Any]:
    """Score a trained run (or its snapshot of ``step``) on a data file read with the run's task;
    ``predictions``: also write one JSON line per example there.

    A file of another difficulty than the run's task is scored, with a warning and a ``data_note`` in the
    summary. The summary records its ``source`` (weights and data with their SHA-256), ``limit`` and
    ``precision``, so that a saved result can be recognised as up to date; ``save`` keeps it in the run
    directory (:func:`_save_in_run`), where ``seqvcr report`` finds it instead of decoding again. Raises
    ConfigError (bad options), RunDirError (the run cannot be loaded, ``predictions`` cannot be written)
    or DataError (the data file), each before any decoding.
    """
    _check_eval_options(batch_size, limit, predictions)
    dev = select_device(device)
    run = load_run(run_dir, device=dev, step=step)
    data_path, note, data = _read_eval_data(run, data_file, limit, dev)
    precision = precision_used(dev, run.config.train.precision)
    with ProgressBar(len(data), "eval", unit="examples", enabled=progress) as bar:
        result = evaluate(run.model, run.fmt, data, batch_size=batch_size,
                          precision=run.config.train.precision, on_batch=bar.update)
    lines = [json.dumps({"index": i, **rec}) + "\n" for i, rec in enumerate(result.predictions)]
    if predictions:
        out = Path(predictions)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, "".join(lines))
    assert run.weights is not None
    summary = {
        "run_dir": str(run_dir), "data": str(data_file), "task": run.task.describe(),
        "method": run.config.method.name, "step": run.step, **result.summary(), "device": str(dev),
        "precision": precision, "limit": limit,
        "source": outputs.source(run_dir, run.weights, run.step, str(data_file), data_path),
    }
    if note:
        summary["data_note"] = note
    if save:
        _save_in_run(summary, lines, run_dir, step, data_path, limit)
    return summary
