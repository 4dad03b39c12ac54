#!/usr/bin/env bash
# Test seqvcr against the oldest releases its pyproject.toml allows for transformers, tqdm, tensorboard
# and wandb: a throwaway virtual environment gets each at the floor of its declared range (">=4.40"
# becomes "==4.40.*"), the rest of seqvcr's dependencies as usual, and runs the tests that exercise them
# (Hugging Face export/import and the Seq-VCR plug-in, progress bars, TensorBoard and W&B logging).
#
#   bash scripts/check_floors.sh [VENV_DIR]        # default VENV_DIR: /tmp/seqvcr-floors (replaced)
#
# PyPI (or a mirror) must be reachable; PyTorch comes from TORCH_SPEC (default torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/seqvcr-floors}
PY=${PYTHON:-python3}
floors=$("$PY" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
specs = list(project["dependencies"])
for extra in project["optional-dependencies"].values():
    specs += extra
wanted = ("transformers", "tqdm", "tensorboard", "wandb")
for spec in specs:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", spec)
    if m and m.group(1) in wanted:
        print(f"{m.group(1)}=={m.group(2)}.*")
EOF
)
echo "check_floors: $(echo $floors) in $VENV" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
# seqvcr's own requirements, then the floors over them, then seqvcr itself without touching either
"$VENV/bin/pip" install --quiet --disable-pip-version-check pyyaml matplotlib safetensors numpy pytest $floors
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e .
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
print("check_floors: testing with", ", ".join(f"{p} {m.version(p)}" for p in
      ("torch", "transformers", "tokenizers", "tqdm", "tensorboard", "wandb")))
EOF
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$VENV/bin/python" -m pytest -p no:cacheprovider \
  tests/test_hf.py tests/test_hf_cli.py tests/test_progress.py tests/test_tracking.py
