"""Training one network: engines, optimisers and schedules, the epoch loop, evaluation, checkpoints,
diagnostics and the job's result. It knows no MLflow and no command line: it is handed a ``Recorder``."""
