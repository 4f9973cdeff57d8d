"""A small torch MLP behind the sklearn estimator API, a classifier and a regressor, so it sits in a
``Pipeline`` and logs like any model.

It trains on CUDA when a GPU is visible and always ends on the CPU, so the pickled model loads on
machines without one (the scoring workers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


class _TorchMLP(BaseEstimator):
    """The network and its training loop; the subclasses say what it predicts and with which loss."""

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

    def _train(self, X: Any, targets: np.ndarray, loss_fn: Any, outputs: int = 1) -> None:
        import torch
        from torch import nn

        torch.manual_seed(self.random_state)
        features = np.asarray(X, dtype=np.float32)
        self.device_used_ = self._device()
        layers: list[nn.Module] = []
        width = features.shape[1]
        for units in self.hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, outputs))
        network = nn.Sequential(*layers).to(self.device_used_)
        optimiser = torch.optim.AdamW(network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        inputs = torch.from_numpy(features).to(self.device_used_)
        # class indices for a softmax over several outputs, floats for one
        wanted = torch.from_numpy(np.asarray(targets, dtype=np.int64 if outputs > 1 else np.float32))
        wanted = wanted.to(self.device_used_)
        generator = torch.Generator(device="cpu").manual_seed(self.random_state)
        network.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(inputs), generator=generator).to(self.device_used_)
            for start in range(0, len(inputs), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad()
                output = network(inputs[batch])
                loss = loss_fn(output if outputs > 1 else output.squeeze(1), wanted[batch])
                loss.backward()
                optimiser.step()
        self.network_ = network.eval().to("cpu")

    def _output(self, X: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            output = self.network_(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        return (output if output.shape[1] > 1 else output.squeeze(1)).numpy()


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    """Binary: a 0/1 target, binary cross-entropy on one logit. Multiclass (targets 0..k-1, as
    :func:`airflow_mlops.task_types.label_values` gives them): cross-entropy on k logits."""

    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        from torch import nn

        target = np.asarray(y, dtype=np.int64)
        self.classes_ = np.arange(max(int(target.max()) + 1, 2))
        if len(self.classes_) == 2:
            self._train(X, target, nn.BCEWithLogitsLoss())
        else:
            self._train(X, target, nn.CrossEntropyLoss(), outputs=len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        from scipy.special import expit, softmax

        logits = self._output(X).astype(np.float64)
        if logits.ndim == 2:
            return softmax(logits, axis=1)
        positive = expit(logits)
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    """Regression: mean squared error on the standardised target, predictions in the target's units."""

    def fit(self, X: Any, y: Any) -> TorchMLPRegressor:
        from torch import nn

        target = np.asarray(y, dtype=np.float64)
        self.target_mean_, self.target_scale_ = float(target.mean()), float(target.std()) or 1.0
        self._train(X, (target - self.target_mean_) / self.target_scale_, nn.MSELoss())
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self._output(X).astype(np.float64) * self.target_scale_ + self.target_mean_
