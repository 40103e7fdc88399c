"""The values a PromQL expression evaluates to, over every step of a query at once.

A query is evaluated at steps `t_0 .. t_{n-1}` (one step for an instant query).
Every node gives one of:

- `Scalar`: one float per step;
- `Vector`: series (label dicts) with a float and a presence flag per step, as
  two (series x steps) arrays, so an operator is one numpy expression for the
  whole query instead of one Python object per sample;
- `Text`: a string literal.

Absence is the `ok` flag, never NaN: NaN is a legitimate PromQL value (0/0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAME = "__name__"


class QueryError(ValueError):
    """A query Prometheus would refuse; `kind` is its errorType (bad_data, execution)."""

    kind = "bad_data"


class BadData(QueryError):
    kind = "bad_data"


class ExecutionError(QueryError):
    kind = "execution"


@dataclass
class Scalar:
    v: np.ndarray  # (steps,)


@dataclass
class Text:
    s: str


@dataclass
class Vector:
    labels: list[dict[str, str]]
    v: np.ndarray  # (series, steps) float64
    ok: np.ndarray  # (series, steps) bool

    @classmethod
    def empty(cls, steps: int) -> Vector:
        return cls([], np.zeros((0, steps)), np.zeros((0, steps), dtype=bool))

    def kept(self) -> Vector:
        """Without the series absent at every step."""
        rows = self.ok.any(axis=1)
        if rows.all():
            return self
        return Vector(
            [lb for lb, k in zip(self.labels, rows, strict=True) if k], self.v[rows], self.ok[rows]
        )


def label_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def without_name(labels: dict[str, str]) -> dict[str, str]:
    if NAME not in labels:
        return labels
    return {k: v for k, v in labels.items() if k != NAME}


def merged(vec: Vector) -> Vector:
    """Series with the same labels folded into one (they must not overlap in time).

    Dropping labels (the metric name after `rate`, labels outside `on(...)`) can
    give one label set to several series; Prometheus refuses that when they have
    a value at the same step, and shows one series otherwise (a GPU's workload
    periods, for example).
    """
    rows: dict[tuple, list[int]] = {}
    for i, lb in enumerate(vec.labels):
        rows.setdefault(label_key(lb), []).append(i)
    if len(rows) == len(vec.labels):
        return vec.kept()
    labels, values, oks = [], [], []
    for ix in rows.values():
        ok = vec.ok[ix]
        if (ok.sum(axis=0) > 1).any():
            raise ExecutionError("vector cannot contain metrics with the same labelset")
        labels.append(vec.labels[ix[0]])
        values.append(np.where(ok, vec.v[ix], 0.0).sum(axis=0))
        oks.append(ok.any(axis=0))
    return Vector(labels, np.array(values), np.array(oks)).kept()
