"""FastJSONRenderer writes what DRF's JSONRenderer writes: str keys (the fast path), other
keys, types orjson does not know, integers too large for it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rest_framework.renderers import JSONRenderer

from apps.read.render import FastJSONRenderer


@pytest.mark.parametrize(
    "data",
    [
        {"results": [{"uuid": "GPU-1", "value": 1.5, "labels": {"pod": "p"}}], "next": None},
        {1: "one", "2": [{3: 4.0}]},
        {"price": Decimal("1.10"), "when": "2025-07-18T20:00:00Z"},
        {"big": 2**70, "list": [1, 2]},
    ],
)
def test_the_same_json_as_drf(data: dict) -> None:
    ours = FastJSONRenderer().render(data, "application/json")
    drf = JSONRenderer().render(data, "application/json")
    assert json.loads(ours) == json.loads(drf)
