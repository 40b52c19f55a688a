#!/usr/bin/env bash
# MLflow's tracking server, as a cluster's jobs share it: runs in a database, artifacts uploaded through the
# server (--artifacts-destination: the nodes need no access to the artifact folder), bound where you say.
#
#   scripts/tracking-server.sh [--backend-store-uri URI] [--artifacts-destination DIR] [--host H] [--port P]
#
# Defaults: the project's sqlite store (mlruns/mlflow.db), artifacts in mlruns/served-artifacts, 127.0.0.1:5000.
# On a cluster, a PostgreSQL backend and the login node's address, e.g.
#   scripts/tracking-server.sh --backend-store-uri postgresql://mlflow:PW@dbhost/mlflow --host 10.0.0.5 --port 5000
# and every job records there: mlplab-train tracking=server tracking.uri=http://10.0.0.5:5000 …
set -euo pipefail
cd "$(dirname "$0")/.."

backend="sqlite:///$PWD/mlruns/mlflow.db"
artifacts="$PWD/mlruns/served-artifacts"
host=127.0.0.1
port=5000
while [ $# -gt 0 ]; do
  case "$1" in
    --backend-store-uri) backend=$2; shift 2 ;;
    --artifacts-destination) artifacts=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) echo "tracking-server: unknown option $1: use --backend-store-uri, --artifacts-destination, --host or --port" >&2; exit 2 ;;
  esac
done
[ -x .venv/bin/mlflow ] || { echo "tracking-server: no .venv: run make setup first" >&2; exit 2; }
mkdir -p mlruns
case "$artifacts" in *://*) ;; *) mkdir -p "$artifacts" ;; esac
masked=$(printf '%s' "$backend" | sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#')
echo "tracking-server: http://$host:$port over $masked, artifacts in $artifacts" >&2
export PATH="$PWD/.venv/bin:$PATH"  # the server starts uvicorn by name
exec .venv/bin/mlflow server --backend-store-uri "$backend" --artifacts-destination "$artifacts" \
  --host "$host" --port "$port" --workers 1
