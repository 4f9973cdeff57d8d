#!/usr/bin/env bash
# Run by the postgres image on an empty data volume (/docker-entrypoint-initdb.d), as the superuser
# POSTGRES_USER, after it created the "airflow" database. The superuser stays inside this container:
# every service logs in as a role of its own that owns its databases and is no superuser.
#
#   role     databases             used by
#   airflow  airflow               Airflow's metadata and Celery results
#   mlflow   mlflow, mlflow_auth   the MLflow server: backend store, basic-auth users
#   feast    feast                 Feast's SQL registry (the Airflow tasks)
#
# Idempotent: on an existing volume, run it again to create what is missing and to set each role's
# password to the one in .env (docs/production.md, "Threat model"):
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-init-databases.sh
# The passwords reach psql through its environment (\getenv), never its command line.
# Sourced or executed alike: it changes no shell option and calls no exit.

: "${POSTGRES_USER:?}" \
  "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD for the postgres service}" \
  "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD for the postgres service}" \
  "${FEAST_DB_PASSWORD:?set FEAST_DB_PASSWORD for the postgres service}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres <<'SQL'
DO $$
BEGIN
  IF current_user IN ('airflow', 'mlflow', 'feast') THEN
    RAISE EXCEPTION 'POSTGRES_USER must not be % : that name is a service role', current_user;
  END IF;
END
$$;

\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv feast_password FEAST_DB_PASSWORD

SELECT 'CREATE ROLE airflow' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow') \gexec
SELECT 'CREATE ROLE mlflow' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') \gexec
SELECT 'CREATE ROLE feast' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'feast') \gexec
ALTER ROLE airflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'airflow_password';
ALTER ROLE mlflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'mlflow_password';
ALTER ROLE feast WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'feast_password';

SELECT 'CREATE DATABASE airflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow') \gexec
SELECT 'CREATE DATABASE mlflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow') \gexec
SELECT 'CREATE DATABASE mlflow_auth' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow_auth') \gexec
SELECT 'CREATE DATABASE feast' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'feast') \gexec
ALTER DATABASE airflow OWNER TO airflow;
ALTER DATABASE mlflow OWNER TO mlflow;
ALTER DATABASE mlflow_auth OWNER TO mlflow;
ALTER DATABASE feast OWNER TO feast;

-- Each role reaches its own databases only (an owner keeps CONNECT).
REVOKE CONNECT, TEMPORARY ON DATABASE airflow, mlflow, mlflow_auth, feast FROM PUBLIC;
SQL
