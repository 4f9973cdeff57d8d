"""Feast extensions: an offline store that reads the data lake's partitions on S3, and a batch engine
that writes Feast's online rows column-wise (SQLite and Redis)."""
