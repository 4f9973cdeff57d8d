"""The online prediction service: ``@champion`` over Feast's online store, behind a small FastAPI app."""
