"""``seqvcr export-hf RUN_DIR OUT_DIR``: a trained run as a Hugging Face GPT-2 directory.

The directory holds what ``transformers`` needs to load the model and its tokenizer::

    OUT_DIR/config.json             GPT2Config (written by seqvcr.hf.save_hf_gpt2), with the run's
                                    eos_token_id and pad_token_id
    OUT_DIR/generation_config.json  greedy decoding until <eos>, at most the task's longest target
    OUT_DIR/model.safetensors       GPT2LMHeadModel weights (Conv1D layout, tied head stored once)
    OUT_DIR/tokenizer.json          a word-level tokenizer (whitespace split) with the run's vocabulary
    OUT_DIR/tokenizer_config.json   so that AutoTokenizer / PreTrainedTokenizerFast load it; it returns
                                    input_ids and attention_mask only (``model_input_names``) and pads
                                    on the left, as generation wants
    OUT_DIR/seqvcr.json             where it came from: run, step, task, method, prompt format

so that the standard idioms work::

    tok = AutoTokenizer.from_pretrained(OUT_DIR)
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR)          # GPT2LMHeadModel
    enc = tok(["5 6 3 2 * 7 4 3 4 || </pause_start> <pause> <pause> </pause_end>"], return_tensors="pt")
    model(**enc).logits                                             # the run's model's logits
    tok.batch_decode(model.generate(**enc)[:, enc.input_ids.shape[1]:], skip_special_tokens=True)

and ``generate`` gives seqvcr's own greedy answer. (GPT-2 adds ``token_type_ids`` through its token
embedding, so a tokenizer that returned them would shift every logit: ``model_input_names`` leaves them
out.)

Training in the other direction (from a local Hugging Face GPT-2 directory) needs no command: set
``model.init_from: DIR`` in the config (``seqvcr.runs.build_model`` calls ``seqvcr.hf.load_hf_gpt2``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from seqvcr import commands
from seqvcr.atomic import check_output_path, write_text_atomic
from seqvcr.errors import RunDirError
from seqvcr.tokenizer import SPECIAL_TOKENS, Tokenizer

__all__ = ["export_hf", "register", "tokenizer_json"]

#: Files this command writes; with ``--force`` they are overwritten, other files in OUT_DIR are kept.
EXPORT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "seqvcr.json",
)
#: What the exported tokenizer returns: no ``token_type_ids`` (GPT-2 would embed them as tokens).
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def tokenizer_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """The run's vocabulary in the ``tokenizers`` JSON format: a WordLevel model after a whitespace split.

    The five special tokens (pad, eos, pause markers) are registered as special added tokens, so
    ``decode(..., skip_special_tokens=True)`` drops them. There is no unknown token: encoding a token that
    is not in the task's vocabulary is an error, as in seqvcr's own tokenizer.
    """
    special = set(SPECIAL_TOKENS)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": tok,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, tok in enumerate(tokenizer.tokens)
            if tok in special
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,  # the default decoding joins tokens with single spaces: the task format
        "model": {"type": "WordLevel", "vocab": dict(tokenizer.index), "unk_token": "<unk>"},
    }




def export_hf(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, force: bool = False
) -> dict[str, Any]:
    """Write the run's model (its final weights, or its latest checkpoint) and tokenizer as a Hugging
    Face GPT-2 directory.

    Refuses an ``out_dir`` that is a file, or a non-empty directory unless ``force`` (then the files
    listed in ``EXPORT_FILES`` are overwritten and any other file is left alone). Returns a summary dict.

    Raises:
        RunDirError: ``run_dir`` is not a run with a checkpoint, or ``out_dir`` is in the way.
    """
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
    generation = {  # model.generate(**enc) decodes as seqvcr does: greedy, until <eos>, the task's budget
        "bos_token_id": tok.eos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "do_sample": False,
        "num_beams": 1,
        "max_new_tokens": run.fmt.max_new_tokens(),
    }
    write_text_atomic(out / "generation_config.json", json.dumps(generation, indent=2) + "\n")

    write_text_atomic(out / "tokenizer.json", json.dumps(tokenizer_json(tok), indent=2) + "\n")
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": run.model.config.block_size,
        "model_input_names": MODEL_INPUT_NAMES,
        "padding_side": "left",
        "pad_token": tok.tokens[tok.pad_id],
        "eos_token": tok.tokens[tok.eos_id],
        "clean_up_tokenization_spaces": False,
    }
    write_text_atomic(out / "tokenizer_config.json", json.dumps(tok_cfg, indent=2) + "\n")

    example = run.task.generate(1, seed=0)[0]
    meta = {
        "source_run": str(Path(run_dir).resolve()),
        "step": run.step,
        "finished": run.result is not None,
        "task": run.task.describe(),
        "method": run.config.method.name,
        "pauses": run.fmt.pauses,
        "cot": run.fmt.cot,
        "vocabulary": list(tok.tokens),
        "prompt_example": " ".join(run.fmt.prompt_tokens(example)),
        "target_example": " ".join(run.fmt.target_tokens(example)),
        "note": "greedy-decode after the prompt until the eos token; tokens are space separated",
    }
    write_text_atomic(out / "seqvcr.json", json.dumps(meta, indent=2) + "\n")
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


# --------------------------------------------------------------------------- command line


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
    the Hugging Face GPT-2 format, with a word-level tokenizer for the run's vocabulary and a
    generation_config.json: AutoTokenizer and AutoModelForCausalLM load it,
    model(**tok(prompt, return_tensors='pt')) computes the run's logits and generate(**enc) gives its
    greedy answer. (The other direction needs no command: set model.init_from: DIR in a training
    config.)"""
    summary = export_hf(args.run_dir, args.out_dir, force=args.force)
    if not summary["finished"]:
        print(
            f"note: {args.run_dir} has no result.json; exported its latest checkpoint "
            f"(step {summary['step']})",
            file=sys.stderr,
        )
    return commands.print_json(summary)
