"""What Airflow's own processes load from this package at run time: executors, Celery and database settings."""
