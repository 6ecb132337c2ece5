#!/usr/bin/env bash
# Install pram. The one install step of the README, of CI and of the cluster files (clusters/*.yaml).
#
#   bash install.sh            a virtual environment in ./.venv, pram and what it needs
#   bash install.sh --test     the same, with the test tools
#   bash install.sh --here     into the Python that is active (a cluster node's environment), no venv
#
# torch: a torch that is already installed is kept (a CUDA build on a GPU machine). Otherwise
# $PRAM_TORCH is installed, by default torch==2.13.0 (on the machines of this project, a CPU build on disk).
set -euo pipefail
cd "$(dirname "$0")"
extras="" venv=".venv"
for arg in "$@"; do
  case "$arg" in
    --test) extras="[test]" ;;
    --dev) extras="[dev]" ;;
    --here) venv="" ;;
    *) echo "install.sh: unknown option $arg (use --test, --dev, --here)" >&2; exit 2 ;;
  esac
done
if [ -n "$venv" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  py="$venv/bin/python"
else
  py="$(command -v python3 || command -v python)"
fi
pip() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }
"$py" -c "import torch" 2>/dev/null || pip "${PRAM_TORCH:-torch==2.13.0}"
pip -e ".${extras}"
# The offline multilingual encoder: a HuggingFace folder in the cache, built once (seconds).
"$py" -m pram.cli encoder build
echo "pram installed in $("$py" -c 'import sys; print(sys.prefix)')"
