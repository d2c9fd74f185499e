#!/usr/bin/env bash
# Creates the reference environment that generates tests/fixtures/pyro/*.json: Pyro 1.8.4
# (the version of the book, from PyPI) on Debian's python3-torch. Reference only: nothing in
# Ember's build or tests runs Python.
#
#   bash scripts/setup_pyro_venv.sh [VENV_DIR]     (default: build/venv-pyro)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-build/venv-pyro}
need=()
for p in python3-torch python3-venv; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ! -x "$venv/bin/python" ]; then
  # --system-site-packages: Debian's torch; Pyro without deps so pip never pulls a torch wheel.
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --no-deps pyro-ppl==1.8.4
  "$venv/bin/pip" install -q pyro-api==0.1.2 opt_einsum==3.3.0 tqdm
fi
"$venv/bin/python" -c 'import pyro, torch; print("pyro", pyro.__version__, "torch", torch.__version__)'
