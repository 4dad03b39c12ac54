"""Hugging Face interop end to end: export a trained run (``seqvcr export-hf``) and train from a local
Hugging Face GPT-2 directory (``model.init_from``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import micro_overrides

from seqvcr import config as C
from seqvcr import training
from seqvcr.checkpoints import read_checkpoint
from seqvcr.cli import main
from seqvcr.runs import load_run

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hf") / "run"
    training.train(C.load_config(None, micro_overrides("seqvcr_pause", 10)), run, progress=False)
    return run


@pytest.mark.slow
def test_export_hf_gives_the_same_logits_in_transformers(trained_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "export"
    assert main(["export-hf", str(trained_run), str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 10 and summary["finished"]
    from seqvcr.hf_cli import EXPORT_FILES

    for name in EXPORT_FILES:
        assert (out / name).is_file(), name

    run = load_run(trained_run)
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.randint(0, run.model.config.vocab_size, (3, run.model.config.block_size))  # (B, T)
    with torch.no_grad():
        ours = run.model(ids).logits
        theirs = hf(ids).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)

    # the tokenizer maps a space-separated prompt to seqvcr's ids, and back
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(out)
    meta = json.loads((out / "seqvcr.json").read_text())
    prompt = meta["prompt_example"]
    assert tok(prompt)["input_ids"] == run.fmt.tokenizer.encode(prompt.split())
    assert tok.decode(tok(prompt)["input_ids"]) == prompt
    assert tok.eos_token_id == run.fmt.tokenizer.eos_id == hf.config.eos_token_id


@pytest.fixture(scope="module")
def scrambled_run(trained_run: Path, tmp_path_factory) -> Path:
    """The trained run with strongly perturbed weights: a model whose greedy outputs differ from prompt
    to prompt and rarely stop at <eos> (so the decoding budget matters too)."""
    import shutil

    from seqvcr.checkpoints import save_model

    run = tmp_path_factory.mktemp("hf_scrambled") / "run"
    shutil.copytree(trained_run, run)
    loaded = load_run(run)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    heads = {"seqvcr": loaded.seqvcr} if loaded.seqvcr is not None else {}
    save_model(run / "model.safetensors", loaded.model, heads, loaded.step)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("which", ["trained", "scrambled"])
def test_exported_model_works_with_the_standard_idioms(
    which: str, trained_run: Path, scrambled_run: Path, tmp_path: Path
) -> None:
    """AutoTokenizer + AutoModelForCausalLM: model(**enc) gives the run's logits and generate(**enc) its
    greedy answer, with nothing passed but what the tokenizer returns."""
    from seqvcr.evaluation import generate_continuations
    from seqvcr.hf_cli import export_hf
    from seqvcr.sequences import encode_examples

    run_dir = trained_run if which == "trained" else scrambled_run
    out = tmp_path / "export"
    export_hf(run_dir, out)
    run = load_run(run_dir)
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == run.fmt.tokenizer.eos_id
    assert config["pad_token_id"] == run.fmt.tokenizer.pad_id
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["do_sample"] is False and generation["max_new_tokens"] == run.fmt.max_new_tokens()
    assert json.loads((out / "tokenizer_config.json").read_text())["model_input_names"] == [
        "input_ids", "attention_mask"]

    tok = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert isinstance(model, transformers.GPT2LMHeadModel) and tok.padding_side == "left"
    examples = run.task.generate(8, seed=5)
    prompts = [" ".join(run.fmt.prompt_tokens(ex)) for ex in examples]
    ids = torch.tensor([run.fmt.tokenizer.encode(p.split()) for p in prompts])  # (B, P) seqvcr's ids

    one = tok(prompts[0], return_tensors="pt")
    assert set(one.keys()) == {"input_ids", "attention_mask"}  # no token_type_ids
    enc = tok(prompts, return_tensors="pt")
    assert torch.equal(enc["input_ids"], ids)
    with torch.no_grad():
        torch.testing.assert_close(model(**one).logits, run.model(ids[:1]).logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(model(**enc).logits, run.model(ids).logits, rtol=0, atol=1e-5)
        generated = model.generate(**enc)  # everything else from generation_config.json
    ours = generate_continuations(run.model, encode_examples(run.fmt, examples), run.fmt)
    eos = run.fmt.tokenizer.tokens[run.fmt.tokenizer.eos_id]
    theirs = []
    for row in generated[:, ids.shape[1]:].tolist():
        tokens = tok.convert_ids_to_tokens(row)
        theirs.append(tokens[: tokens.index(eos) + 1] if eos in tokens else tokens)
    assert theirs == ours
    if which == "scrambled":
        assert len({tuple(t) for t in ours}) > 1  # the outputs differ: the comparison is not vacuous
    answers = [run.fmt.extract_answer(t) for t in theirs]
    assert answers == [run.fmt.extract_answer(t) for t in ours]


@pytest.mark.slow
def test_export_hf_refuses_a_non_empty_directory_without_force(
    trained_run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["export-hf", str(trained_run), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not empty" in err and "--force" in err
    assert not (out / "config.json").exists()
    assert main(["export-hf", str(trained_run), str(out), "--force"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "keep.txt").read_text() == "x"


@pytest.mark.slow
def test_export_hf_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["export-hf", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run directory" in err
    (tmp_path / "file").write_text("x")
    assert main(["export-hf", str(tmp_path / "missing"), str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_train_from_a_local_hugging_face_gpt2_directory(tmp_path: Path) -> None:
    # a randomly initialised GPT-2 saved by transformers itself (config.json + model.safetensors), with
    # a width and vocabulary that differ from the micro config's: the directory decides the shape
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(vocab_size=120, n_positions=64, n_embd=48, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    src = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(hf_cfg).save_pretrained(src)
    assert (src / "model.safetensors").is_file()

    run = tmp_path / "run"
    # the micro config states 2 x 32 with 2 heads; the sizes must come from the directory instead
    from_dir = ["model.n_layer=null", "model.n_head=null", "model.n_embd=null", f"model.init_from={src}"]
    cfg = C.load_config(None, micro_overrides("seqvcr_pause", 20) + from_dir)
    result = training.train(cfg, run, progress=False)
    assert result["steps"] == 20
    ckpt = read_checkpoint(run / "checkpoint.safetensors")
    model_config = ckpt.info["model_config"]
    assert model_config["n_embd"] == 48 and model_config["block_size"] == 64
    assert ckpt.tensors["seqvcr.projection.weight"].shape[1] == 48  # the head sized from the loaded model
    assert result["config"]["model"]["n_embd"] == 48  # the saved config states the directory's shape
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lm = [r["lm_loss"] for r in recs if r["kind"] == "train"]
    assert lm[-1] < lm[0]  # it trains

    # the model training starts from (runs.build_model, as train() builds it) holds the HF weights
    from seqvcr.runs import build_model

    model = build_model(C.resolve(cfg), model_config["vocab_size"], 20)
    hf = transformers.GPT2LMHeadModel.from_pretrained(src)
    torch.testing.assert_close(model.transformer.wpe.weight, hf.transformer.wpe.weight)
    hf_c_attn = hf.transformer.h[1].attn.c_attn.weight  # Conv1D: (in, out)
    torch.testing.assert_close(model.transformer.h[1].attn.c_attn.weight, hf_c_attn.t())


@pytest.mark.slow
def test_a_question_copied_from_a_data_file_gives_the_answer_of_seqvcr_eval(
    trained_run: Path, tmp_path: Path, capsys
) -> None:
    """A question line as Deng et al.'s files write it (``5 1 6 * 0 4 9||``: the separator against the
    digit), plus the pause block the model card names, through AutoTokenizer and generate: the same
    continuations and answers as ``seqvcr eval`` on that file."""
    from seqvcr.hf_cli import export_hf
    from seqvcr.tasks import write_examples

    run = load_run(trained_run)
    data = tmp_path / "test.txt"
    write_examples(run.task, data, run.task.generate(12, seed=9))
    preds = tmp_path / "preds.jsonl"
    assert main(["eval", str(trained_run), "--data", str(data), "--predictions", str(preds), "--no-save",
                 "--quiet", "--json"]) == 0
    capsys.readouterr()
    evaluated = [json.loads(line) for line in preds.read_text().splitlines()]

    out = tmp_path / "export"
    export_hf(trained_run, out)
    meta = json.loads((out / "seqvcr.json").read_text())
    card = (out / "README.md").read_text()
    assert meta["pause_block"] == "</pause_start> <pause> <pause> </pause_end>"
    assert meta["pause_block"] in card and meta["question_example"] in card and "## Prompt format" in card
    lines = data.read_text().splitlines()
    questions = [line[: line.index("||") + 2] for line in lines]
    assert all(q[-3].isdigit() for q in questions)  # as in the file: "... 9||", no space before "||"
    prompts = [f"{q} {meta['pause_block']}" for q in questions]

    tok = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    enc = tok(prompts, return_tensors="pt", padding=True)
    examples = [run.task.parse_line(line, "test") for line in lines]
    expected = [run.fmt.tokenizer.encode(run.fmt.prompt_tokens(ex)) for ex in examples]
    assert enc["input_ids"].tolist() == expected
    with torch.no_grad():
        generated = model.generate(**enc)
    eos = run.fmt.tokenizer.tokens[run.fmt.tokenizer.eos_id]
    for row, ev in zip(generated[:, enc["input_ids"].shape[1]:].tolist(), evaluated):
        tokens = tok.convert_ids_to_tokens(row)
        tokens = tokens[: tokens.index(eos) + 1] if eos in tokens else tokens
        assert " ".join(tokens) == ev["output"]
        assert run.fmt.extract_answer(tokens) == ev["prediction"].split()
    # a token outside the vocabulary is still refused (never silently mapped to another token)
    with pytest.raises(Exception, match="UNK"):
        tok(["5 1 x * 0 4 9||"])
