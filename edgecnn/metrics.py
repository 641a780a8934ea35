"""Accuracy bookkeeping shared by training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TopK:
    """Running top-1 / top-5 counts."""

    n: int = 0
    correct1: int = 0
    correct5: int = 0

    def update(self, logits, labels) -> None:
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top == labels.view(-1, 1)
        self.n += int(labels.numel())
        self.correct1 += int(hit[:, 0].sum())
        self.correct5 += int(hit.any(dim=1).sum())

    @property
    def top1(self) -> float:
        return self.correct1 / self.n if self.n else 0.0

    @property
    def top5(self) -> float:
        return self.correct5 / self.n if self.n else 0.0

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "n": self.n}
