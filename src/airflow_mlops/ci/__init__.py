"""Continuous integration of a user's pipeline project (Google's MLOps level 2): ``airflow-mlops ci``
checks the specs, the DAG files and their parse time, then runs every pipeline end to end on a small
sample on a throwaway embedded stack; ``airflow-mlops init`` scaffolds a project with CI definitions that
call it. Development tooling: the library never imports it."""
