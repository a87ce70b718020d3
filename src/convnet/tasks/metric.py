"""Metrics that accumulate over a whole split and reduce across DDP ranks.

A figure such as accuracy, mIoU or mAP is a function of the whole split, not an average of
per-batch figures: a metric keeps *states* (counts, sums, a confusion matrix, or lists of
per-image results), ``update`` adds one batch to them, and ``compute`` turns them into
figures once. Under ``torchrun`` each rank sees its shard; ``compute`` first reduces the
states across ranks (a sum, or a concatenation of lists), so every rank gets the figures of the
whole split. torchmetrics' ``Metric`` (update / compute / reset / sync) is the model.
"""
from __future__ import annotations

import abc
import copy
from typing import Any

import torch

REDUCTIONS = ("sum", "cat")


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Metric(abc.ABC):
    """Base class: declare states with :meth:`add_state`, implement ``update`` and ``compute``.

    ``"sum"`` states are tensors (all-reduced by summation); ``"cat"`` states are Python lists
    of anything picklable (gathered from every rank and concatenated in rank order).
    """

    def __init__(self) -> None:
        self._defaults: dict[str, Any] = {}
        self._reductions: dict[str, str] = {}

    def add_state(self, name: str, default: Any, reduce: str = "sum") -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(f"state {name!r}: reduce must be one of {REDUCTIONS}, got {reduce!r}")
        if reduce == "sum" and not isinstance(default, torch.Tensor):
            raise TypeError(f"state {name!r}: a 'sum' state is a tensor, got {type(default).__name__}")
        if reduce == "cat" and not isinstance(default, list):
            raise TypeError(f"state {name!r}: a 'cat' state is a list, got {type(default).__name__}")
        self._defaults[name] = default
        self._reductions[name] = reduce
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        """Forget every update (back to the declared defaults)."""
        for name, default in self._defaults.items():
            setattr(self, name, copy.deepcopy(default))

    @abc.abstractmethod
    def update(self, outputs: Any, batch: dict[str, Any]) -> None:
        """Add one batch: the model's outputs and the batch they came from."""

    @abc.abstractmethod
    def compute(self) -> dict[str, Any]:
        """The figures from the states as they are (call :meth:`result` for whole-split figures)."""

    def sync(self) -> None:
        """Reduce every state across ranks in place (a no-op outside torchrun)."""
        if not distributed():
            return
        import torch.distributed as dist

        for name, reduce in self._reductions.items():
            value = getattr(self, name)
            if reduce == "sum":
                device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
                reduced = value.to(device).clone()
                dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
                setattr(self, name, reduced.to(value.device))
            else:
                gathered: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, value)
                setattr(self, name, [item for part in gathered for item in part])

    def result(self) -> dict[str, Any]:
        """Reduce across ranks, then compute: the figures of the whole split."""
        self.sync()
        return self.compute()

    def progress(self) -> dict[str, float]:
        """Cheap running figures for a progress bar during an epoch (none by default)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The ``"sum"`` states as plain numbers and lists (a training checkpoint keeps them so
        that an epoch resumed in the middle reports the same figures); keep training metrics'
        states small."""
        return {name: getattr(self, name).tolist() for name, r in self._reductions.items() if r == "sum"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        for name, value in state.items():
            if self._reductions.get(name) != "sum":
                raise ValueError(f"{type(self).__name__} has no summed state {name!r}")
            default = self._defaults[name]
            setattr(self, name, torch.tensor(value, dtype=default.dtype).reshape(default.shape))
