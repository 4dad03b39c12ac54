#!/usr/bin/env bash
# Set up seqvcr on a fresh machine: a virtual environment in .venv with PyTorch and seqvcr installed.
#
#   bash scripts/bootstrap.sh          # core: what the commands need (the main job, `seqvcr demo`)
#   bash scripts/bootstrap.sh test     # + the test extra: pytest and every optional dependency the tests
#                                      #   exercise (transformers, tensorboard, wandb), so no test is skipped
#   bash scripts/bootstrap.sh dev      # + ruff
#
# The argument may also come from SEQVCR_EXTRAS (core | test | dev); the argument wins. Idempotent: a
# second run only checks. PyTorch is installed only when the environment has none (default
# torch==2.13.0; set TORCH_SPEC to choose another build, e.g. TORCH_SPEC="torch==2.5.1"). seqvcr is
# installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-${SEQVCR_EXTRAS:-core}}
case "$EXTRAS" in
  core) NEEDED="seqvcr yaml matplotlib safetensors tqdm"; TARGET="." ;;
  test) NEEDED="seqvcr yaml matplotlib safetensors tqdm pytest numpy transformers tensorboard wandb"
        TARGET=".[test]" ;;
  dev)  NEEDED="seqvcr yaml matplotlib safetensors tqdm pytest numpy transformers tensorboard wandb ruff"
        TARGET=".[dev]" ;;
  *) echo "bootstrap: unknown extras '$EXTRAS'; expected core, test or dev" >&2; exit 2 ;;
esac
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
missing() {  # exit status 0 when a module of $NEEDED cannot be found
  "$VPY" -c "import importlib.util as u, sys; sys.exit(all(u.find_spec(m) for m in sys.argv[1:]))" $NEEDED
}
if missing >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.seqvcr-installed ]; then
  echo "bootstrap: installing seqvcr (editable), $EXTRAS" >&2
  "$VPY" -m pip install --quiet --disable-pip-version-check -e "$TARGET"
  touch .venv/.seqvcr-installed
fi
echo "bootstrap: ready, $EXTRAS ($("$VPY" -c 'import torch, seqvcr; print("torch", torch.__version__, "/ seqvcr", seqvcr.__version__)'))" >&2
