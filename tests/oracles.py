"""Independent references for the numbers seqvcr reports, written from the paper and the README's
conventions rather than from seqvcr's code, so that a test comparing the two can fail for a wrong
result and not only for a crash.

* :func:`greedy_tokens` -- greedy decoding by a full forward pass over the whole prefix for every new
  token, one prompt at a time (no KV cache, no batching), up to the first ``<eos>`` or the budget.
* :func:`oracle_scores` -- exact match and accuracy per answer position from token lists, by string
  operations: the answer is what ``<eos>`` closes, after the last CoT separator.
* :func:`oracle_eval` -- both of the above for a saved run on a data file; :func:`oracle_entropy_means`
  the mean layer entropy of a saved run, from :func:`entropy_reference`.
* :func:`seq_vcr_reference` (and its two terms, and :func:`seq_vcr_batch_time_reference`) -- Eq. 3-4
  with ``torch.cov`` (PyTorch's own unbiased covariance) on the rows that count at each position, an
  explicit d x d matrix per position.
* :func:`lm_loss_reference` -- the next-token cross-entropy over the CoT, answer and ``<eos>`` targets
  only, the targets chosen from each sequence's layout by hand.
* :func:`entropy_reference` -- Eq. 2 from NumPy's eigenvalues of the raw Gram matrix.
* :func:`counted_matmul_flops_per_token` -- the FLOPs of a training step as ``FlopCounterMode`` counts
  them on the running model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from seqvcr.tasks import Example

EOS = "<eos>"


@torch.no_grad()
def greedy_tokens(model: torch.nn.Module, prompts: Sequence[Sequence[int]], budget: int,
                  tokens: Sequence[str]) -> list[list[str]]:
    """Greedy continuation of each prompt (token ids), one full forward pass per new token, at most
    ``budget`` new tokens, returned as token strings up to and including the first ``<eos>``.

    Each prompt is decoded on its own (batch of one), so nothing a batch shares can enter."""
    was_training = model.training
    model.eval()
    out: list[list[str]] = []
    for prompt in prompts:
        seq = torch.tensor([list(prompt)], dtype=torch.long)  # (1, P)
        new: list[str] = []
        for _ in range(budget):
            logits = model(seq).logits[0, -1]  # (V,)
            token = int(torch.argmax(logits))
            new.append(tokens[token])
            if tokens[token] == EOS:
                break
            seq = torch.cat([seq, torch.tensor([[token]])], dim=1)
        out.append(new)
    model.train(was_training)
    return out


def oracle_answer(output: Sequence[str], cot_end: str | None, bare_answer_ok: bool) -> str | None:
    """The answer text of one output, or None when ``<eos>`` does not close it.

    ``cot_end``: the CoT separator when the run uses a chain of thought (the answer is the text after
    its last occurrence), else None (the whole closed text is the answer). ``bare_answer_ok``: an
    output without the separator is a direct answer (arithmetic and LIS, whose separator is the
    question's own), else it has no answer (multiplication's ``####``)."""
    text = " ".join(output)
    head, closed, _ = text.partition(EOS)
    if not closed:
        return None
    head = head.strip()
    if cot_end is None:
        return head
    words = head.split(" ") if head else []
    if cot_end not in words:
        return head if bare_answer_ok else None
    return f" {head} ".rsplit(f" {cot_end} ", 1)[-1].strip()


def oracle_scores(outputs: Sequence[Sequence[str]], golds: Sequence[Sequence[str]],
                  cot_end: str | None = None, bare_answer_ok: bool = False) -> tuple[float, list[float]]:
    """Exact match (the closed answer equals the gold one, token for token, nothing more or less) and
    the fraction of examples whose k-th answer token is the gold one, for every answer position k."""
    width = max(len(g) for g in golds)
    right = 0
    hits = [0] * width
    counts = [0] * width
    for output, gold in zip(outputs, golds, strict=True):
        answer = oracle_answer(output, cot_end, bare_answer_ok)
        words = answer.split() if answer else []
        right += answer is not None and words == list(gold)
        for k, g in enumerate(gold):
            counts[k] += 1
            hits[k] += len(words) > k and words[k] == g
    return right / len(golds), [h / c for h, c in zip(hits, counts)]


def seq_vcr_terms_reference(z: torch.Tensor, mask: torch.Tensor | None = None,
                            eta: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3-4 (``over="batch"``): at every position the unbiased covariance (``torch.cov``) of the rows
    that count there; positions with fewer than two rows are skipped and T is the number that count.
    Returns the unweighted (variance, covariance) terms as float64 scalars (differentiable in z)."""
    z = z.double()
    n, t, d = z.shape
    var_sum = cov_sum = z.new_zeros(())
    counted = 0
    for i in range(t):
        rows = z[:, i] if mask is None else z[mask[:, i].bool(), i]  # (n_i, d)
        if rows.shape[0] < 2:
            continue
        c = torch.cov(rows.T, correction=1).reshape(d, d)  # (d, d)
        diag = torch.diagonal(c)
        var_sum = var_sum + torch.clamp(1.0 - torch.sqrt(diag + eta), min=0.0).sum()
        cov_sum = cov_sum + (c**2).sum() - (diag**2).sum()
        counted += 1
    return var_sum / (counted * d), cov_sum / (counted * d)


def seq_vcr_batch_time_reference(z: torch.Tensor, eta: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Appendix F (``over="batch_time"``): one unbiased covariance over every (sequence, position)
    vector, both terms normalised by 1/d. Returns (variance, covariance) as float64 scalars."""
    rows = z.double().reshape(-1, z.shape[-1])  # (N*T, d)
    d = rows.shape[1]
    c = torch.cov(rows.T, correction=1).reshape(d, d)
    diag = torch.diagonal(c)
    var = torch.clamp(1.0 - torch.sqrt(diag + eta), min=0.0).sum() / d
    return var, ((c**2).sum() - (diag**2).sum()) / d


def seq_vcr_reference(z: torch.Tensor, lambda1: float, lambda2: float, mask: torch.Tensor | None = None,
                      eta: float = 1e-3) -> torch.Tensor:
    """``lambda1 * variance + lambda2 * covariance`` of :func:`seq_vcr_terms_reference`."""
    var, cov = seq_vcr_terms_reference(z, mask, eta)
    return lambda1 * var + lambda2 * cov


def lm_loss_reference(logits: torch.Tensor, ids: Sequence[Sequence[int]],
                      prompt_lengths: Sequence[int]) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens after each sequence's prompt (CoT, answer and
    ``<eos>``), never the prompt (question, pause block) or padding.

    logits: (B, L-1, V) for the inputs ``ids[:, :-1]``; ids: each sequence's real tokens (unpadded).
    Differentiable in ``logits``."""
    total = logits.new_zeros((), dtype=torch.float64)
    count = 0
    for b, (seq, p) in enumerate(zip(ids, prompt_lengths, strict=True)):
        logp = torch.log_softmax(logits[b].double(), dim=-1)  # (L-1, V)
        for j in range(p, len(seq)):  # target j is predicted at position j - 1
            total = total - logp[j - 1, seq[j]]
            count += 1
    return total / count


def entropy_reference(z: torch.Tensor) -> float:
    """Eq. 2 (alpha = 1, natural log) of one sequence's states z (n, d): -sum p log p of the eigenvalues
    of the raw Gram z z^T divided by their sum (NumPy, float64)."""
    g = z.detach().double().numpy()
    eig = np.clip(np.linalg.eigvalsh(g @ g.T), 0.0, None)
    p = eig / eig.sum()
    p = p[p > 1e-12]
    return float(-(p * np.log(p)).sum())


def oracle_eval(run_dir: str | Path, data: str | Path | Sequence[Example], budget: int, limit: int = 0,
                cot_end: str | None = None, bare_answer_ok: bool = False
                ) -> tuple[float, list[float], list[list[str]]]:
    """Exact match, accuracy per answer position and the outputs of a saved run on a data file (or a
    list of examples), by :func:`greedy_tokens` and :func:`oracle_scores` (``budget``: the most new
    tokens, stated by the caller from the task: e.g. 5 for 2 x 2 digits answered directly, 4 digits
    and ``<eos>``)."""
    from seqvcr.runs import load_run
    from seqvcr.tasks import read_examples

    run = load_run(str(run_dir), device="cpu")
    examples = read_examples(run.task, Path(data)) if isinstance(data, str | Path) else list(data)
    if limit:
        examples = examples[:limit]
    tok = run.fmt.tokenizer
    prompts = [tok.encode(run.fmt.prompt_tokens(ex)) for ex in examples]
    outputs = greedy_tokens(run.model, prompts, budget, tok.tokens)
    em, pos = oracle_scores(outputs, [ex.answer for ex in examples], cot_end, bare_answer_ok)
    return em, pos, outputs


@torch.no_grad()
def oracle_entropy_means(run_dir: str | Path, data_file: str | Path, indices: Sequence[int]) -> list[float]:
    """The mean over the sequences ``indices`` of a data file of Eq. 2 (:func:`entropy_reference`) for
    every layer L0..LN of a saved run, each sequence measured alone on its real tokens but the final
    ``<eos>``."""
    from seqvcr.runs import load_run
    from seqvcr.tasks import read_examples

    run = load_run(str(run_dir), device="cpu")
    examples = read_examples(run.task, Path(data_file))
    tok = run.fmt.tokenizer
    sums: list[float] | None = None
    for i in indices:
        ex = examples[i]
        ids = tok.encode(run.fmt.prompt_tokens(ex) + run.fmt.target_tokens(ex))[:-1]
        hidden = run.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        values = [entropy_reference(h[0]) for h in hidden]
        sums = values if sums is None else [a + b for a, b in zip(sums, values, strict=True)]
    assert sums is not None
    return [v / len(indices) for v in sums]


def counted_matmul_flops_per_token(model: torch.nn.Module, seq_len: int, batch: int = 2) -> float:
    """The FLOPs of every matrix product of one training step (forward + backward of the LM loss) per
    token, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the model as it runs.

    Run the model on the ``meta`` device: there attention decomposes into counted batched products
    and nothing is allocated. Element-wise work (bias additions, LayerNorm, GELU) is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x, x).loss.backward()
    return counter.get_total_flops() / (batch * seq_len)
