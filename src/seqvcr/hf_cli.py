"""``seqvcr export-hf RUN_DIR OUT_DIR``: a trained run as a Hugging Face GPT-2 directory.

OUT_DIR: config.json and model.safetensors (``seqvcr.hf.save_hf_gpt2``), generation_config.json (greedy
until <eos>), tokenizer.json (word level, split at whitespace and around the task's separators, so a
question copied from a data file tokenises as it is), tokenizer_config.json (left padding, and no
``token_type_ids``, which GPT-2 would embed as tokens), seqvcr.json (where it came from, the prompt
format) and README.md (the model card: a prompt is a data file's question through its separator, then,
for the methods with pauses, the pause block, which neither the data files nor the tokenizer add).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqvcr import commands
from seqvcr.atomic import check_output_path, write_text_atomic
from seqvcr.errors import RunDirError
from seqvcr.tokenizer import SPECIAL_TOKENS, Tokenizer

if TYPE_CHECKING:
    from seqvcr.runs import LoadedRun

__all__ = ["export_hf", "model_card", "register", "tokenizer_json"]

#: Files this command writes; with ``--force`` they are overwritten, other files in OUT_DIR are kept.
EXPORT_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "seqvcr.json", "README.md")


def tokenizer_json(tokenizer: Tokenizer, separators: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run's vocabulary in the ``tokenizers`` JSON format: a WordLevel model after a whitespace split
    that also splits off each of ``separators`` (``||`` and ``####``, which Deng et al.'s files write
    against the digit before them). The special tokens are special added tokens, so
    ``skip_special_tokens=True`` drops them. No unknown token: a word outside the vocabulary is an error,
    as in seqvcr's own tokenizer (a wrong token would be a wrong prompt, never one to guess at).
    """
    split: list[dict[str, Any]] = [{"type": "WhitespaceSplit"}]
    if separators:
        pattern = "|".join(re.escape(t) for t in sorted(set(separators), key=len, reverse=True))
        split.append({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
                      "invert": False})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}
                         for i, tok in enumerate(tokenizer.tokens) if tok in SPECIAL_TOKENS],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": split},
        "post_processor": None,
        "decoder": None,  # the default decoding joins tokens with single spaces: the task format
        "model": {"type": "WordLevel", "vocab": dict(tokenizer.index), "unk_token": "<unk>"},
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _write_tokenizer(out: Path, run: LoadedRun) -> None:
    """The tokenizer and generation files, so that ``AutoTokenizer`` and ``generate`` act as seqvcr does."""
    tok = run.fmt.tokenizer
    _write_json(out / "generation_config.json", {  # greedy, until <eos>, the task's budget
        "bos_token_id": tok.eos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "do_sample": False,
        "num_beams": 1,
        "max_new_tokens": run.fmt.max_new_tokens(),
    })
    separators = tuple(t for t in (run.task.question_end, run.task.cot_end)
                       if t in tok.index and t not in SPECIAL_TOKENS)
    _write_json(out / "tokenizer.json", tokenizer_json(tok, separators))
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": run.model.config.block_size,
        "model_input_names": ["input_ids", "attention_mask"],  # no token_type_ids: GPT-2 embeds them
        "padding_side": "left",
        "pad_token": tok.tokens[tok.pad_id],
        "eos_token": tok.tokens[tok.eos_id],
        "clean_up_tokenization_spaces": False,
    })


def _export_meta(run: LoadedRun, run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``seqvcr.json``: where the model came from, its vocabulary and the prompt it takes, by example."""
    example = run.task.generate(1, seed=0)[0]
    line = run.task.format_line(example)
    question = line[: line.index(run.task.question_end) + len(run.task.question_end)]
    pause_block = " ".join(run.fmt.pause_block())
    return {
        "source_run": str(Path(run_dir).resolve()),
        "step": run.step,
        "finished": run.result is not None,
        "task": run.task.describe(),
        "method": run.config.method.name,
        "pauses": run.fmt.pauses,
        "cot": run.fmt.cot,
        "vocabulary": list(run.fmt.tokenizer.tokens),
        "prompt_example": " ".join(run.fmt.prompt_tokens(example)),
        "target_example": " ".join(run.fmt.target_tokens(example)),
        "question_example": question,
        "pause_block": pause_block,
        "prompt_format": "a data file's question through its separator"
        + (", a space, then pause_block" if pause_block else ""),
        "note": "greedy-decode after the prompt until the eos token; tokens are space separated",
    }


def export_hf(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
              force: bool = False) -> dict[str, Any]:
    """Write the run's model (its final weights, else its latest checkpoint) and tokenizer as a Hugging
    Face GPT-2 directory; returns a summary. RunDirError when ``run_dir`` is not a run with weights, or
    ``out_dir`` is in the way (a file, the run itself, or non-empty without ``force``)."""
    from seqvcr.hf import save_hf_gpt2
    from seqvcr.runs import load_run

    out = Path(out_dir)
    check_output_path(out, "OUT_DIR", directory=True)
    if out.is_dir() and Path(run_dir).is_dir() and out.resolve() == Path(run_dir).resolve():
        raise RunDirError(f"{out}: is the run directory itself (its model.safetensors would be replaced); "
                          "choose another OUT_DIR")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RunDirError(f"{out}: directory is not empty; use --force to overwrite the exported files")
    run = load_run(run_dir, device="cpu")  # RunDirError without config.yaml and saved weights
    tok = run.fmt.tokenizer
    save_hf_gpt2(run.model, out, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)  # config + weights
    _write_tokenizer(out, run)
    meta = _export_meta(run, run_dir)
    _write_json(out / "seqvcr.json", meta)
    write_text_atomic(out / "README.md", model_card(meta, run.fmt.max_new_tokens(), run.model.config))
    return {
        "run_dir": str(run_dir),
        "out_dir": str(out),
        "step": run.step,
        "finished": run.result is not None,
        "params": run.model.num_params(non_embedding=False),
        "vocab_size": run.model.config.vocab_size,
        "block_size": run.model.config.block_size,
        "files": list(EXPORT_FILES),
    }


def model_card(meta: dict[str, Any], max_new_tokens: int, gpt: Any) -> str:
    """The export's README.md: what the model is, the prompt it takes (a data file's question, then the
    pause block for the methods with pauses) and the transformers lines that run it."""
    question, pause_block = meta["question_example"], meta["pause_block"]
    prompt = f"{question} {pause_block}" if pause_block else question
    if pause_block:
        pauses = (f"2. then, separated by a space, the pause block `{pause_block}`, which the model was "
                  "trained with after every question. The data files do not hold it and the tokenizer does "
                  "not add it: append it to every prompt (`seqvcr.json` has it as `pause_block`). Without "
                  "it the model sees a sequence it was never trained on.")
    else:
        pauses = (f"2. nothing more: method `{meta['method']}` has no pause tokens, so the prompt ends at "
                  "the separator.")
    return f"""# seqvcr export: {meta['task']}, {meta['method']}, step {meta['step']}

A GPT-2 ({gpt.n_layer} layers x {gpt.n_embd}, {gpt.vocab_size} tokens) trained with
[seqvcr](https://arxiv.org/abs/2411.02344) and exported by `seqvcr export-hf` from
`{meta['source_run']}`. `AutoTokenizer` and `AutoModelForCausalLM` load it.

## Prompt format

A prompt is

1. the question of one line of the task's data file, through its separator, e.g. `{question}`;
{pauses}

The tokens are separated by spaces; the task's separators are split off even where the data files write
them against the token before (`9||`), so a question copied from a data file works as it is. Every other
word must be a token of the vocabulary (`vocabulary` in `seqvcr.json`): the tokenizer has no unknown
token, and stops with `WordLevel error: Missing [UNK] token` at a word it does not know.

Example prompt: `{prompt}`

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("THIS_DIRECTORY")
model = AutoModelForCausalLM.from_pretrained("THIS_DIRECTORY")
enc = tok(["{prompt}"], return_tensors="pt")
out = model.generate(**enc)  # greedy until <eos>, at most {max_new_tokens} new tokens: generation_config.json
print(tok.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True))
```

The continuation is what `seqvcr eval` decodes for the same question: the model's target format,
`{meta['target_example']}` for the example's question (the answer ends at `<eos>`; an output without
`<eos>` counts as no answer). Several prompts batch with left padding (the tokenizer's default).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export-hf`` to the ``seqvcr`` command."""
    p = commands.add_command(subparsers, "export-hf", _cmd_export_hf,
                             "write a trained run as a Hugging Face GPT-2 directory (config.json + "
                             "model.safetensors)")
    commands.add_run_dir(p)
    p.add_argument("out_dir", help="output directory (created; must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR, overwriting")


def _cmd_export_hf(args: argparse.Namespace) -> int:
    """Export the trained weights of RUN_DIR (model.safetensors, else the latest checkpoint) to OUT_DIR in
    the Hugging Face GPT-2 format, with a word-level tokenizer and a generation_config.json:
    AutoTokenizer and AutoModelForCausalLM load it, the model computes the run's logits and generate()
    gives its greedy answer. (The other direction: set model.init_from: DIR in a training config.)"""
    summary = export_hf(args.run_dir, args.out_dir, force=args.force)
    if not summary["finished"]:
        print(f"note: {args.run_dir} has no result.json; exported its latest checkpoint "
              f"(step {summary['step']})", file=sys.stderr)
    return commands.print_json(summary)
