"""CPU vs GPU time of the torch trainer (``TorchMLPClassifier``) on the same data and model.

    python benchmarks/torch_trainer.py --rows 200000 --epochs 5

Prints one table row per device that is available (CUDA only where a GPU is visible). Needs only
numpy, scikit-learn and torch, so it also runs on a bare GPU machine with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from airflow_mlops.steps.torch_mlp import TorchMLPClassifier


def data(rows: int, columns: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns)).astype(np.float32)
    logit = x[:, :5] @ np.array([1.2, -0.8, 0.5, 0.9, -1.1]) + 0.6 * x[:, 5] * x[:, 6]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    x, y = data(args.rows, args.columns)
    split = int(0.8 * len(x))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"rows={args.rows} columns={args.columns} epochs={args.epochs} batch={args.batch_size} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    print(f"{'device':<8} {'name':<28} {'fit s':>8} {'rows/s':>10} {'auc':>6}")
    for device in devices:
        model = TorchMLPClassifier(epochs=args.epochs, batch_size=args.batch_size, device=device)
        if device == "cuda":  # CUDA context creation is not training time
            torch.zeros(1, device="cuda")
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.fit(x[:split], y[:split])
        elapsed = time.perf_counter() - start
        auc = roc_auc_score(y[split:], model.predict_proba(x[split:])[:, 1])
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        print(f"{device:<8} {name[:28]:<28} {elapsed:>8.2f} {args.epochs * split / elapsed:>10.0f} {auc:>6.3f}")


if __name__ == "__main__":
    main()
