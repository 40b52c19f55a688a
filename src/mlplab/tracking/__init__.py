"""MLflow: stores and their clients, one run's life, the training recorder, sweeps, study records, and the runs of
processes that died."""
