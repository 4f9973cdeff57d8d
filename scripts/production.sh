#!/usr/bin/env bash
# The production topology without Docker, as local processes on loopback: Airflow on the CeleryExecutor
# (Redis broker, metadata DB on PostgreSQL, workers for the `default` and `gpu` queues), an MLflow server
# (PostgreSQL backend, S3 artifacts), Feast (registry on PostgreSQL, online store on Redis) and an S3
# endpoint (moto's server); then the level-1 scenario through it. Needs PostgreSQL on 127.0.0.1:5432
# (user postgres, trust auth) and Redis on 127.0.0.1:6379; each run creates its own databases and drops
# them at the end. Extra arguments go to `airflow-mlops demo` (e.g. --keep-ui to keep it all up until
# Ctrl+C, --days 30, --port 8080: Airflow on it, log servers, S3 and MLflow on the next five).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || {
  echo "PostgreSQL is not answering on 127.0.0.1:5432; start it, e.g. pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
  exit 1
}
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || {
  echo "Redis is not answering on 127.0.0.1:6379; start it, e.g. redis-server --daemonize yes --bind 127.0.0.1 --port 6379" >&2
  exit 1
}
exec .venv/bin/airflow-mlops demo --production --home .local/production "$@"
