"""MetaSchedule tuning jobs for integer models: extract the kernels intvit does not schedule
itself, tune them with the XGBoost cost model (locally or on RPC devices), keep a JSON
database that reruns resume, and apply it at compile time."""
