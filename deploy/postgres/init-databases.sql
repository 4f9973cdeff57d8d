-- Run once by the postgres image on an empty data volume, after it created the "airflow" database.
-- MLflow's backend store and Feast's SQL registry get databases of their own on the same server.
CREATE DATABASE mlflow;
CREATE DATABASE feast;
