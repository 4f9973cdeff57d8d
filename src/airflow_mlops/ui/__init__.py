"""The model-monitoring page in the Airflow UI: per pipeline the champion and its predecessors with
their metrics and gate decisions, drift per day, the latest validations, and the reports themselves."""
