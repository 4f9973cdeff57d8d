"""Airflow operators, one module per pipeline (features, training, monitoring) on a shared base; the
validation gate serves the first two. Each is a thin adapter around a step of :mod:`airflow_mlops.steps`."""
