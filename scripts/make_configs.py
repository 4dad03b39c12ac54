"""Write configs/ for every paper setting (SPEC section 5) and the tiny CPU config.

Run from the repository root: ``python scripts/make_configs.py``. The files are committed; this script
is how they were made, so a change of a shared hyperparameter is made here once. A config names its
setting (task, its size, method) and states only what differs from the defaults ``seqvcr.config.resolve``
fills in: the model presets (``model.PRESETS``), the paper's Seq-VCR coefficients per task
(``objectives.DEFAULT_COEFFICIENTS``) and the schema's defaults (``tests/test_config.py`` checks it).
"""

from __future__ import annotations

from pathlib import Path

import yaml

METHODS = ("vanilla", "cot", "pause", "seqvcr", "seqvcr_pause")
OUT = Path("configs")
# Every paper setting: evaluation and checkpoints every 5000 steps on 1000 validation examples.
TRAIN = {"eval_every": 5000, "checkpoint_every": 5000, "log_every": 100, "eval_examples": 1000}


def mult(digits: int, method: str, **seqvcr: object) -> dict:
    # Paper: GPT-2 small (pre-trained, fine-tuned) for 40 epochs; its optimiser settings and its 808k
    # generated problems are the schema's defaults; Deng et al.'s valid/test files. Set model.init_from to
    # a local Hugging Face GPT-2 directory to fine-tune as the paper does (otherwise the same architecture
    # is trained from scratch).
    return {
        "task": {
            "name": "mult",
            "digits": digits,
            "valid_file": f"ref:mult/{digits}x{digits}/valid.txt",
            "test_file": f"ref:mult/{digits}x{digits}/test.txt",
        },
        "model": {"preset": "gpt2-small"},
        "method": {"name": method},
        **({"seqvcr": seqvcr} if seqvcr else {}),
        "optim": {"epochs": 40},
        "train": TRAIN,
    }


def feng(task: str, key: str, value: int, method: str, pauses: int) -> dict:
    # Paper / Feng et al.: minGPT from scratch (the mingpt preset; the paper also uses 5 and 6 layers),
    # AdamW lr 1e-4, batch 128, 100 epochs, 5 warm-up epochs, linear decay (the default), 1M examples.
    # Feng's arithmetic training sets mix in fewer operators (under: 1..L in proportions 1:2:...:L); the
    # validation (and test) sets keep exactly L.
    task_cfg: dict = {"name": task, key: value}
    if task == "arith":
        task_cfg["under"] = True
    task_cfg["train_size"] = 1_000_000
    return {
        "task": task_cfg,
        "method": {"name": method, "pauses": pauses},
        "optim": {"lr": 1e-4, "batch_size": 128, "epochs": 100, "warmup": 0.05},
        "train": TRAIN,
    }


TINY = {
    # Trains in about a minute on a 2-core CPU: 3x3 multiplication, the tiny preset.
    "task": {
        "name": "mult",
        "digits": 3,
        "train_size": 20_000,
        "valid_file": "ref:mult/3x3/valid.txt",
        "test_file": "ref:mult/3x3/test.txt",
    },
    "model": {"preset": "tiny"},
    "method": {"name": "seqvcr_pause"},
    "seqvcr": {"proj_dim": 256},
    "optim": {
        "lr": 1e-3,
        "batch_size": 64,
        "max_steps": 600,
        "warmup": 0.05,
        "schedule": "cosine",
        "min_lr_ratio": 0.1,
    },
    "train": {
        "device": "cpu",
        "log_every": 100,
        "eval_every": 300,
        "eval_examples": 200,
        "checkpoint_every": 300,
    },
}
def write(name: str, cfg: dict, header: str) -> None:
    path = OUT / f"{name}.yaml"
    path.write_text(f"# {header}\n" + yaml.safe_dump(cfg, sort_keys=False))


MULT_NOTE = (
    "the paper fine-tunes pre-trained GPT-2 small: set model.init_from=DIR (a local Hugging Face\n"
    "# GPT-2 directory); without it the same architecture is trained from scratch"
)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for d in (4, 5):
        for m in METHODS:
            note = MULT_NOTE
            if m == "seqvcr_pause":
                note += (
                    ",\n# where Seq-VCR on the last layer works poorly (App. H: 0.03 on 5x5; "
                    "see mult5x5_seqvcr_pause_scratch_l0*)"
                )
            head = f"{d}x{d} multiplication, {m}, GPT-2 small (paper Table 1);\n# {note}"
            write(f"mult{d}x{d}_{m}", mult(d, m), head)
    # Appendix H: from scratch, Seq-VCR + Pause works when it regularises L0 (the embeddings): 0.97 with
    # the covariance over the batch, 0.99 over batch x positions (App. F's variant).
    write(
        "mult5x5_seqvcr_pause_scratch_l0",
        mult(5, "seqvcr_pause", layer=0),
        "5x5 multiplication, seqvcr_pause trained from scratch with Seq-VCR on L0 (the embeddings),\n"
        "# covariance over the batch (paper App. H: 0.97; the last layer gives 0.03 from scratch)",
    )
    write(
        "mult5x5_seqvcr_pause_scratch_l0_batch_time",
        mult(5, "seqvcr_pause", layer=0, over="batch_time"),
        "5x5 multiplication, seqvcr_pause trained from scratch with Seq-VCR on L0 (the embeddings),\n"
        "# covariance over batch x positions (paper App. H: 0.99)",
    )
    # Best pause counts reported by the paper: 7 for arithmetic (5 operators), 4 for LIS (length 80).
    for ops in (4, 5, 6):
        for m in METHODS:
            write(
                f"arith{ops}_{m}",
                feng("arith", "operators", ops, m, 7),
                f"arithmetic mod 11, {ops} operators, {m}, minGPT (paper Fig. 7-8); "
                "depth: model.n_layer=4|5|6;\n# training set with Feng et al.'s mix of 1..L operators "
                "(under), validation set exactly L",
            )
    for n in (50, 80, 100):
        for m in METHODS:
            write(
                f"lis{n}_{m}",
                feng("lis", "length", n, m, 4),
                f"LIS length {n}, {m}, minGPT (paper Fig. 9); depth: model.n_layer=4|5|6",
            )
    write("tiny_cpu", TINY, "tiny CPU config: 3x3 multiplication, Seq-VCR + pause, about a minute on 2 cores")


if __name__ == "__main__":
    main()
