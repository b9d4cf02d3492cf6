"""A metric whose whole state is one tensor of sums, so shards (processes, torchrun ranks) combine
by addition: ``state_tensor()`` is all-reduced (SUM) and put back with ``load_state_tensor()``,
or two instances are combined with ``merge()`` / ``+=``. Used by the boundary and calibration
metrics; :class:`harness.metrics.SegmentationMetrics` follows the same contract."""

from __future__ import annotations

import torch


class SummableState:
    """Base class: subclasses set ``_dtype`` and implement ``_shape()`` and ``_settings()``.

    ``_shape()`` is the state's shape, ``_settings()`` a tuple of the settings two instances must
    share to be merged (number of classes, bins, band widths, ...). ``device``: where the state
    lives; default the device of the first inputs.
    """

    _dtype: torch.dtype = torch.int64

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else None
        self._state: torch.Tensor | None = None

    def _shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _settings(self) -> tuple:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._state = None

    def _add(self, delta: torch.Tensor) -> None:
        """Add ``delta`` (the state's shape) to the state, creating it on ``delta``'s device."""
        if self._state is None:
            with torch.inference_mode(False):  # a normal tensor, so later in-place sums work anywhere
                self._state = delta.to(self._dtype).clone()
        else:
            self._state += delta.to(device=self._state.device, dtype=self._dtype)

    def state_tensor(self) -> torch.Tensor:
        """The accumulated sums (not a copy); zeros before the first update."""
        if self._state is None:
            with torch.inference_mode(False):
                self._state = torch.zeros(self._shape(), dtype=self._dtype, device=self.device or "cpu")
        return self._state

    def load_state_tensor(self, t: torch.Tensor) -> None:
        """Replace the sums by ``t`` (e.g. their all-reduced sum), a tensor of the state's shape."""
        expected = self._shape()
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
            shape = tuple(t.shape) if hasattr(t, "shape") else type(t).__name__
            raise ValueError(f"{type(self).__name__} state tensor of shape {shape}: expected {expected}")
        if t.is_complex() or t.dtype == torch.bool or (t.dtype.is_floating_point and not self._dtype.is_floating_point):
            raise ValueError(f"{type(self).__name__} state tensor of dtype {t.dtype}: expected {self._dtype} sums")
        with torch.inference_mode(False):
            self._state = t.to(self._dtype, copy=True)

    def merge(self, other: SummableState) -> SummableState:
        """Add ``other``'s sums to this instance; returns self."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other._settings() != self._settings():
            raise ValueError(f"cannot merge {type(self).__name__} with settings {other._settings()} into one with "
                             f"settings {self._settings()}")
        mine = self.state_tensor()
        with torch.inference_mode(False):
            self._state = mine + other.state_tensor().to(mine.device)
        return self

    def __iadd__(self, other: SummableState) -> SummableState:
        return self.merge(other)
