"""docs/STORAGE.md's key table names every key prefix that store/keys.py builds."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from store.keys import Keys

STORAGE_MD = Path(__file__).resolve().parents[2] / "docs" / "STORAGE.md"
ROOT = "/root-of-test"


def built_keys() -> dict[str, str]:
    """{method: key} for every key-building method of Keys, called with placeholder segments."""
    keys = Keys(ROOT)
    out = {}
    for name, func in inspect.getmembers(Keys, inspect.isfunction):
        if name.startswith("_") or isinstance(inspect.getattr_static(Keys, name), staticmethod):
            continue
        params = list(inspect.signature(func).parameters.values())[1:]
        args = [0 if p.annotation in ("int", int) else "x" for p in params]
        key = getattr(keys, name)(*args)
        out[name] = key[0] if isinstance(key, tuple) else key
    return out


def documented_prefix(key: str) -> str:
    """`{root}/` plus the key's literal segments before its first variable one."""
    assert key.startswith(ROOT + "/")
    literal = []
    for segment in key[len(ROOT) + 1 :].split("/"):
        if segment in ("x", "") or segment[:1].isdigit():
            break
        literal.append(segment)
    return "{root}/" + "".join(f"{s}/" for s in literal)


def test_every_key_prefix_is_in_the_key_table():
    table = "\n".join(
        line for line in STORAGE_MD.read_text().splitlines() if line.startswith("| `{root}/")
    )
    built = built_keys()
    assert {"failure", "defragmented_at", "block", "job"} <= set(built)
    missing = {
        name: documented_prefix(key)
        for name, key in built.items()
        if documented_prefix(key) != "{root}/"
        and not re.search(re.escape(documented_prefix(key).rstrip("/")) + r"[/`]", table)
    }
    assert not missing, f"key prefixes missing from docs/STORAGE.md's key table: {missing}"


def test_the_table_documents_the_failure_markers():
    assert documented_prefix(Keys(ROOT).failure("x", 1)) == "{root}/chunk-failures/"
