#!/usr/bin/env bash
# Creates the NumPyro reference environment for the benchmarks' NumPyro column
# (bench/*_numpyro.py): NumPyro and JAX on the CPU, pinned, from PyPI, in a virtual environment
# of Debian's python3 (no system change beyond python3-venv). Reference only: nothing in Ember's
# build or tests runs Python.
#
#   bash scripts/setup_numpyro_venv.sh [VENV_DIR]     (default: build/venv-numpyro)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-build/venv-numpyro}
if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed"; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
  # jax[cpu] pins jaxlib to the same version; numpy and scipy come as jax's dependencies.
  "$venv/bin/pip" install -q numpyro==0.22.0 "jax[cpu]==0.10.2"
fi
"$venv/bin/python" -c 'import numpyro, jax, jaxlib; print("numpyro", numpyro.__version__, "jax", jax.__version__, "jaxlib", jaxlib.__version__)'
