# The two commands of the README, plus the benchmark. Each target sets itself up first (idempotently).
.PHONY: setup train test serve dashboard tracking-server slurm-cluster bench bench-tracking bench-search bench-engines bench-augment bench-soak bench-population bench-slurm assignment6 ui

setup:
	@scripts/setup.sh

# The default experiment: the Assignment 6 Q2 network on real Fashion-MNIST. Extra overrides: make train ARGS='...'
train: setup
	.venv/bin/mlplab-train $(ARGS)

# The whole suite, real-data (slow) tests included.
test: setup
	.venv/bin/pytest $(ARGS)

bench: setup
	.venv/bin/python bench/epoch_speed.py $(ARGS)

bench-tracking: setup
	.venv/bin/python bench/tracking_overhead.py $(ARGS)

bench-engines: setup
	.venv/bin/python bench/engine_speed.py $(ARGS)

# A sweep as a population against one job after another and against joblib; the gain with K and width; memory.
bench-population: setup
	.venv/bin/python bench/population_speed.py $(ARGS)

# SLURM's cost on one node: per job (submission → start → first epoch) and a 16-job sweep against joblib.
bench-slurm: setup
	.venv/bin/python bench/slurm_overhead.py $(ARGS)

bench-augment: setup
	.venv/bin/python bench/augment_cost.py $(ARGS)

# Assignment 6 end to end on real Fashion-MNIST: tracked runs, then experiments/assignment6/REPORT.md (ARGS=--fast: minutes).
assignment6: setup
	.venv/bin/python experiments/assignment6/run.py $(ARGS)

# A 50-trial study whose workers are killed at random (also while a run closes; one on a full tmpfs), then both
# stores checked for consistency.
bench-soak: setup
	.venv/bin/python bench/soak_search.py $(ARGS)

bench-search: setup
	.venv/bin/python bench/search_vs_grid.py $(ARGS)

# The MLflow UI over the project's store, on http://127.0.0.1:5000 (loopback only).
ui: setup
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000

# optuna-dashboard over the project's study storage (STORAGE=<url or journal file> for another; PORT=8080)
dashboard: setup
	.venv/bin/optuna-dashboard $(or $(STORAGE),sqlite:///$(CURDIR)/mlruns/optuna.db) --host 127.0.0.1 --port $(or $(PORT),8080)

# A run's logged model over HTTP on 127.0.0.1 (PORT=5001): make serve RUN=<run id> (ids: .venv/bin/mlplab-runs)
serve: setup
	@test -n "$(RUN)" || { echo "make serve: give the run, e.g. make serve RUN=<run id> (ids: .venv/bin/mlplab-runs)" >&2; exit 2; }
	.venv/bin/mlplab-serve $(RUN) --port $(or $(PORT),5001)

# MLflow's server as jobs on a cluster share it (artifacts uploaded through it); here over the project store.
# ARGS='--backend-store-uri postgresql://… --host …' for a cluster (scripts/tracking-server.sh).
tracking-server: setup
	scripts/tracking-server.sh $(ARGS)

# A throw-away one-node SLURM cluster on this machine (as root): ARGS=start|status|stop (scripts/slurm-cluster.sh).
slurm-cluster:
	scripts/slurm-cluster.sh $(or $(ARGS),status)
