"""A small torch MLP behind the sklearn estimator API, so it sits in a ``Pipeline`` and logs like any model.

It trains on CUDA when a GPU is visible and always ends on the CPU, so the pickled model loads on
machines without one (the scoring workers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    def __init__(
        self,
        hidden_units: tuple[int, ...] = (64, 32),
        epochs: int = 30,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        device: str = "auto",
        random_state: int = 0,
    ):
        self.hidden_units = hidden_units
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state

    def _device(self) -> str:
        import torch

        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        import torch
        from torch import nn

        torch.manual_seed(self.random_state)
        features = np.asarray(X, dtype=np.float32)
        labels = np.asarray(y, dtype=np.float32)
        self.classes_ = np.array([0, 1])
        self.device_used_ = self._device()
        layers: list[nn.Module] = []
        width = features.shape[1]
        for units in self.hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, 1))
        network = nn.Sequential(*layers).to(self.device_used_)
        optimiser = torch.optim.AdamW(network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        inputs = torch.from_numpy(features).to(self.device_used_)
        targets = torch.from_numpy(labels).to(self.device_used_)
        generator = torch.Generator(device="cpu").manual_seed(self.random_state)
        network.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(inputs), generator=generator).to(self.device_used_)
            for start in range(0, len(inputs), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(network(inputs[batch]).squeeze(1), targets[batch])
                loss.backward()
                optimiser.step()
        self.network_ = network.eval().to("cpu")
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            logits = self.network_(torch.from_numpy(np.asarray(X, dtype=np.float32))).squeeze(1)
        positive = torch.sigmoid(logits).numpy().astype(np.float64)
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
