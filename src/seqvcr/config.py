"""The configuration schema: nested dataclasses, YAML files for values, ``key=value`` overrides.

A config names the task, the model, the method (one of the paper's five configurations), the Seq-VCR
knobs, the optimiser and the training loop. ``resolve`` fills every default that depends on other
values (model preset sizes, the per-task Seq-VCR coefficients) so the file saved in a run directory is
complete and can be re-run as it is. The schema states its own facts (the methods, the keys and their
defaults) and imports the others from the modules that implement them (task options, model presets,
Seq-VCR coefficients and rules, positions, metrics targets). YAML reading is ``seqvcr.config_yaml``'s,
whose public functions are importable from here too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from seqvcr import objectives
from seqvcr.atomic import write_text_atomic
from seqvcr.config_yaml import (
    apply_overrides,
    build_dataclass,
    get_by_path,
    load_yaml,
    set_by_path,
    yaml_key_line,
)
from seqvcr.errors import ConfigError
from seqvcr.model import PRESETS, check_shape
from seqvcr.sequences import SEQVCR_POSITIONS
from seqvcr.tasks import TASKS, config_options, task_options
from seqvcr.tracking import LOG_TARGETS, WANDB_MODES

__all__ = ["METHODS", "Config", "CurriculumConfig", "MethodConfig", "ModelConfig", "OptimConfig",
           "RunningSumConfig", "SeqVCRConfig", "TaskConfig", "TrainConfig", "apply_overrides", "from_dict",
           "get_by_path", "load_config", "load_yaml", "resolve", "save_yaml", "set_by_path", "snapshot_steps",
           "to_dict", "to_yaml", "validate", "yaml_key_line"]

# The paper's five configurations: (chain of thought, pause tokens, Seq-VCR).
METHODS: dict[str, tuple[bool, bool, bool]] = {
    "vanilla": (False, False, False),
    "cot": (True, False, False),
    "pause": (False, True, False),
    "seqvcr": (False, False, True),
    "seqvcr_pause": (False, True, True),
}


def _with_task_options(cls: type) -> type:
    """Every task's config option (``seqvcr.tasks.config_options``: name, type, default) as a field of
    ``cls`` after ``name``, made before ``@dataclass`` reads the fields."""
    options = config_options()
    first, *rest = cls.__annotations__.items()
    cls.__annotations__ = dict([first, *((k, tp) for k, (tp, _) in options.items()), *rest])
    for key, (_, default) in options.items():
        setattr(cls, key, default)
    return cls


@dataclass
@_with_task_options
class TaskConfig:
    """Which task and which data. Files override generation; generated sets are seeded. After ``name``
    come every task's options (``digits`` ... ``length``: ``_with_task_options``); the task reads its own."""

    name: str = "mult"  # mult | arith | lis
    train_size: int = 808_000  # generated training examples (ignored when train_file is set)
    valid_size: int = 1000  # generated validation examples (ignored when valid_file is set)
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None  # excluded from generated training data; used by `seqvcr eval`
    data_seed: int = 1234

    if TYPE_CHECKING:  # the task options are fields made at import: to a type checker, Any
        def __getattr__(self, key: str) -> Any: ...

    def task_options(self) -> dict[str, Any]:
        """The options of the chosen task that the config sets (see ``seqvcr.tasks.make_task``)."""
        return {k: getattr(self, k) for k in task_options(self.name) if hasattr(self, k)}


@dataclass
class ModelConfig:
    """GPT-2 architecture; ``preset`` gives sizes, explicit fields override it."""

    preset: str = "mingpt"  # gpt2-small | mingpt | tiny
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    dropout: float | None = None
    bias: bool = True
    tie_weights: bool = True
    block_size: int | None = None  # default: the longest training/validation sequence
    init_from: str | None = None  # local Hugging Face GPT-2 directory to fine-tune from


@dataclass
class MethodConfig:
    """One of the paper's five configurations; ``pauses`` is used by pause and seqvcr_pause."""

    name: str = "vanilla"  # vanilla | cot | pause | seqvcr | seqvcr_pause
    pauses: int = 2

    @property
    def cot(self) -> bool:
        return METHODS[self.name][0]

    @property
    def num_pauses(self) -> int:
        return self.pauses if METHODS[self.name][1] else 0

    @property
    def seqvcr(self) -> bool:
        return METHODS[self.name][2]


@dataclass
class SeqVCRConfig:
    """Knobs of the Seq-VCR regulariser (used when the method includes it)."""

    lambda1: float | None = None  # variance weight; default: the task's (objectives.DEFAULT_COEFFICIENTS)
    lambda2: float | None = None  # covariance weight; default: the task's (objectives.DEFAULT_COEFFICIENTS)
    eta: float = objectives.DEFAULT_ETA
    proj_dim: int = objectives.DEFAULT_PROJ_DIM
    layer: int = -1  # hidden state index: 0 = embeddings, n_layer (or -1) = last layer
    over: str = "batch"  # batch (Eq. 3) | batch_time (App. F)
    positions: str = "all"  # which states count: all | answer | pause | pause_answer (sequences.py)


@dataclass
class RunningSumConfig:
    """Bai et al. 2025's running-sum auxiliary loss (``terms.RunningSum``): multiplication only, training
    only."""

    weight: float = 0.0  # 0: off
    layer: int = 1  # hidden state the linear head reads (0 = embeddings ... n_layer = last layer)
    scale: float = 100.0  # the running sums are regressed divided by this


@dataclass
class CurriculumConfig:
    """What the training sequences look like over training (``curriculum.py``): ``none`` or ``icot_si``,
    Deng et al.'s stepwise removal of the chain of thought (evaluation never has CoT)."""

    name: str = "none"  # none | icot_si
    tokens_per_epoch: float = 8.0  # icot_si: CoT tokens removed per epoch (Deng's Delta)
    steps_per_token: int | None = None  # icot_si: steps between removals (overrides tokens_per_epoch)
    smoothing_lambda: float | None = 4.0  # icot_si: removal smoothing lambda (null: no smoothing)
    reset_optimizer: bool = True  # icot_si: clear AdamW's state at every removal
    start_step: int = 0  # icot_si: steps of full CoT before the first removal


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then decay; training length in epochs or steps."""

    lr: float = 5e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 32  # global batch (= the Seq-VCR covariance batch)
    epochs: float = 1.0
    max_steps: int | None = None  # when set, overrides epochs
    warmup: float = 0.0  # fraction of all steps spent in linear warm-up
    schedule: str = "linear"  # linear | cosine | constant
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass
class TrainConfig:
    """The loop: seeds, device, precision, logging, evaluation and checkpoint cadence."""

    seed: int = 0
    device: str = "auto"  # auto (cuda, then cpu) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the model (static shapes)
    threads: int | None = None  # CPU threads (null or 0: torch's choice)
    log_every: int = 50
    eval_every: int = 500
    eval_examples: int = 500  # validation examples per periodic evaluation (0 = all)
    eval_batch_size: int = 256
    checkpoint_every: int = 500
    # weights-only snapshots (RUN_DIR/snapshots/step_000500.safetensors): a list of steps, or N for every
    # N steps; [] keeps none. `seqvcr eval/entropy --step N` measure them, `seqvcr report` plots them.
    snapshot_steps: int | list[int] = field(default_factory=list)
    log_to: list[str] = field(default_factory=lambda: ["jsonl"])  # jsonl | tensorboard | wandb
    wandb_project: str = "seqvcr"  # the W&B project (log_to: wandb)
    wandb_mode: str = "offline"  # online | offline (no network; `wandb sync` later) | disabled


@dataclass
class Config:
    """A whole experiment."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    seqvcr: SeqVCRConfig = field(default_factory=SeqVCRConfig)
    running_sum: RunningSumConfig = field(default_factory=RunningSumConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES: dict[str, tuple[str, ...]] = {
    "task.name": TASKS,
    "model.preset": tuple(PRESETS),
    "method.name": tuple(METHODS),
    "curriculum.name": ("none", "icot_si"),
    "seqvcr.over": objectives.OVER_CHOICES,
    "seqvcr.positions": SEQVCR_POSITIONS,
    "optim.schedule": ("linear", "cosine", "constant"),
    "train.precision": ("auto", "fp32", "bf16"),
    "train.wandb_mode": WANDB_MODES,
}


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from a nested dict (unknown keys are errors)."""
    cfg = build_dataclass(Config, data, "")
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides, validate. An unknown
    key that comes from the file is reported at its ``file:line``."""
    data = load_yaml(path) if path is not None else {}
    try:
        return from_dict(apply_overrides(data, overrides or []))
    except ConfigError as err:
        key = getattr(err, "key", None)
        line = yaml_key_line(path, key) if path is not None and key else None
        if line is None:
            raise
        raise ConfigError(f"{path}:{line}: {err}") from None


def validate(cfg: Config) -> None:
    """Range and choice checks that the type hints cannot express (the first failing one is raised)."""
    flat = to_dict(cfg)
    for key, allowed in _CHOICES.items():
        value = get_by_path(flat, key)
        _refuse(value not in allowed, f"config key {key!r}: {value!r} is not one of {', '.join(allowed)}")
    for key in ("optim.batch_size", "optim.lr", "train.log_every", "train.eval_every",
                "train.checkpoint_every", "train.eval_batch_size"):
        value = get_by_path(flat, key)
        _refuse(value is None or value <= 0, f"config key {key!r} must be > 0, got {value!r}")
    knobs = {k: getattr(cfg.seqvcr, k) for k in ("proj_dim", "eta", "lambda1", "lambda2")}
    objectives.check_knobs("config key 'seqvcr.{}'", **{k: v for k, v in knobs.items() if v is not None})
    m, o, t = cfg.method, cfg.optim, cfg.train
    _refuse(m.pauses < 0, f"config key 'method.pauses' must be >= 0, got {m.pauses}")
    if m.seqvcr:
        objectives.check_batch(o.batch_size, "optim.batch_size=")
    _refuse(m.seqvcr and cfg.seqvcr.positions == "pause" and m.num_pauses == 0,
            f"config key 'seqvcr.positions': 'pause' needs pause tokens, but method {m.name!r} has none (use "
            "seqvcr_pause, or positions all | answer)")
    _refuse(o.max_steps is not None and o.max_steps < 1,
            f"config key 'optim.max_steps' must be >= 1, got {o.max_steps}")
    _refuse(o.max_steps is None and o.epochs <= 0, f"config key 'optim.epochs' must be > 0, got {o.epochs}")
    _refuse(not 0.0 <= o.warmup < 1.0, f"config key 'optim.warmup' is a fraction in [0, 1), got {o.warmup}")
    _refuse(o.weight_decay < 0 or o.grad_clip < 0,
            "config keys 'optim.weight_decay' and 'optim.grad_clip' must be >= 0")
    _refuse(cfg.task.train_size < 1 and cfg.task.train_file is None,
            f"config key 'task.train_size' must be >= 1, got {cfg.task.train_size}")
    _refuse(t.threads is not None and t.threads < 0,
            f"config key 'train.threads' must be >= 1 (0 or null: torch's choice), got {t.threads}")
    _refuse(t.eval_examples < 0, "config key 'train.eval_examples' must be >= 0 (0: every validation "
            f"example), got {t.eval_examples}")
    snaps = t.snapshot_steps
    _refuse(isinstance(snaps, int) and snaps < 1, "config key 'train.snapshot_steps' must be a list of steps "
            f">= 1 or an interval N >= 1 (every N steps), got {snaps}")
    _refuse(isinstance(snaps, list) and any(s < 1 for s in snaps),
            f"config key 'train.snapshot_steps': steps must be >= 1, got {snaps}")
    for target in t.log_to:
        _refuse(target not in LOG_TARGETS,
                f"config key 'train.log_to': {target!r} is not one of {', '.join(LOG_TARGETS)}")
    _refuse("jsonl" not in t.log_to, "config key 'train.log_to' must include jsonl (reports and resuming "
            f"read metrics.jsonl), got {t.log_to}")
    _refuse(len(set(t.log_to)) != len(t.log_to),
            f"config key 'train.log_to' names a target twice: {t.log_to}")
    for key, value in (("optim.beta1", o.beta1), ("optim.beta2", o.beta2)):
        _refuse(not 0.0 <= value < 1.0, f"config key {key!r} is in [0, 1), got {value}")
    _refuse(not 0.0 <= o.min_lr_ratio <= 1.0,
            f"config key 'optim.min_lr_ratio' is in [0, 1], got {o.min_lr_ratio}")
    check_shape(**{k: v for k, v in vars(cfg.model).items() if v is not None})  # None: the preset's
    _validate_controls(cfg)


def _refuse(bad: bool, message: str) -> None:
    if bad:
        raise ConfigError(message)


def _validate_controls(cfg: Config) -> None:
    """The running-sum term and the CoT-removal curriculum: what they need of the task and method."""
    r, c, n_layer = cfg.running_sum, cfg.curriculum, cfg.model.n_layer
    _refuse(r.weight < 0 or r.scale <= 0,
            f"config keys 'running_sum.weight' >= 0 and 'running_sum.scale' > 0, got {r.weight}, {r.scale}")
    _refuse(r.weight > 0 and cfg.task.name != "mult",
            f"config key 'running_sum.weight': the running sum needs task mult, not {cfg.task.name!r}")
    _refuse(n_layer is not None and not 0 <= r.layer <= n_layer,
            f"config key 'running_sum.layer': {r.layer} is not in 0..{n_layer} (0 = embeddings)")
    if c.name == "none":
        return
    _refuse(cfg.method.cot, "config key 'curriculum.name': icot_si removes the chain of thought during "
            "training; use a method without CoT (vanilla, pause, seqvcr, seqvcr_pause), not cot")
    bad_steps = c.steps_per_token is not None and c.steps_per_token < 1
    _refuse(c.tokens_per_epoch <= 0 or bad_steps or c.start_step < 0,
            "config keys 'curriculum.tokens_per_epoch' > 0, 'curriculum.steps_per_token' >= 1 (or null) and "
            f"'curriculum.start_step' >= 0, got {c.tokens_per_epoch}, {c.steps_per_token}, {c.start_step}")
    _refuse(c.smoothing_lambda is not None and c.smoothing_lambda <= 0,
            f"config key 'curriculum.smoothing_lambda' must be > 0 or null, got {c.smoothing_lambda}")


def resolve(cfg: Config) -> Config:
    """Return a copy with every derived default filled in (preset sizes, task coefficients)."""
    out = copy.deepcopy(cfg)
    if out.model.init_from:
        _sizes_from_hf(out.model)
    for key, value in PRESETS[out.model.preset].items():
        if getattr(out.model, key) is None:
            setattr(out.model, key, value)
    for key, value in zip(("lambda1", "lambda2"), objectives.DEFAULT_COEFFICIENTS[out.task.name]):
        if getattr(out.seqvcr, key) is None:
            setattr(out.seqvcr, key, value)
    n_layer = out.model.n_layer
    if not -(n_layer + 1) <= out.seqvcr.layer <= n_layer:
        raise ConfigError(
            f"config key 'seqvcr.layer': {out.seqvcr.layer} is out of range for a {n_layer}-layer model "
            f"(allowed {-(n_layer + 1)}..{n_layer}; 0 = embeddings, {n_layer} or -1 = last layer)"
        )
    if out.seqvcr.layer < 0:  # -1 and n_layer name the same layer: keep one spelling (stable run ids)
        out.seqvcr.layer += n_layer + 1
    validate(out)
    return out


def _sizes_from_hf(model: ModelConfig) -> None:
    """Take n_layer / n_head / n_embd from a Hugging Face GPT-2 directory's config.json: the pre-trained
    weights decide the architecture; stated sizes that differ are an error (the one check:
    ``runs.build_model`` trusts it). A missing directory (a saved run's, moved since) is left to build_model.
    """
    path = Path(model.init_from or "") / "config.json"
    if not path.is_file():
        return
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    for key in ("n_layer", "n_head", "n_embd"):
        value = hf.get(key)
        if not isinstance(value, int):
            raise ConfigError(f"{path}: missing integer {key!r}")
        stated = getattr(model, key)
        if stated is not None and stated != value:
            raise ConfigError(f"model.{key}={stated} but model.init_from has {key}={value}")
        setattr(model, key, value)


def to_yaml(cfg: Config) -> str:
    """The config as YAML text, sections and keys in schema order (what ``config.yaml`` holds)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write the config as YAML (atomically)."""
    write_text_atomic(path, to_yaml(cfg))


def snapshot_steps(cfg: TrainConfig, total: int) -> list[int]:
    """The steps (1..total, ascending) at which ``train.snapshot_steps`` keeps the weights."""
    spec = cfg.snapshot_steps
    if isinstance(spec, int):
        return list(range(spec, total + 1, spec))
    return sorted({s for s in spec if s <= total})
