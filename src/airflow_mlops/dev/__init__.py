"""The development stack, apart from the library: the embedded stack, the production topology as local
processes, the demo replay and the ``airflow-mlops`` CLI. The library never imports it."""
