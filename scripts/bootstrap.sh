#!/usr/bin/env bash
# Set up seqvcr on a fresh machine: a virtual environment in .venv with PyTorch and seqvcr installed.
# Idempotent: a second run only checks. PyTorch is installed only when the environment has none
# (default torch==2.13.0; set TORCH_SPEC to choose another build, e.g. TORCH_SPEC="torch==2.5.1").
# seqvcr is installed in editable mode with the extras in SEQVCR_EXTRAS (default "test": pytest and every
# optional dependency the tests exercise; "dev" adds ruff).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "bootstrap: installing ${TORCH_SPEC:-torch==2.13.0}" >&2
  "$VPY" -m pip install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
EXTRAS=${SEQVCR_EXTRAS:-test}
NEEDED="seqvcr pytest numpy transformers tensorboard wandb"
[ "$EXTRAS" = "dev" ] && NEEDED="$NEEDED ruff"
missing() {  # exit status 0 when a module of $NEEDED cannot be found
  "$VPY" -c "import importlib.util as u, sys; sys.exit(all(u.find_spec(m) for m in sys.argv[1:]))" $NEEDED
}
if missing >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.seqvcr-installed ]; then
  echo "bootstrap: installing seqvcr (editable) with the $EXTRAS extras" >&2
  "$VPY" -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]"
  touch .venv/.seqvcr-installed
fi
echo "bootstrap: ready ($("$VPY" -c 'import torch, seqvcr; print("torch", torch.__version__, "/ seqvcr", seqvcr.__version__)'))" >&2
