"""The parts the import contract names are the parts README and docs/ARCHITECTURE.md show."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def contract_parts() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "parts")["layers"]
    return {part.strip() for layer in layers for part in layer.split("|")}


def test_every_part_of_the_contract_is_a_folder_in_the_docs():
    parts = contract_parts()
    assert {"telemetry_site", "apps.ingest", "apps.read", "workers", "store"} <= parts
    readme = (REPO / "README.md").read_text()
    architecture = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    for part in parts:
        folder = part.replace(".", "/") + "/"
        assert (REPO / folder).is_dir(), folder
        assert f"`{folder}`" in readme, f"README's layout table lacks {folder}"
        assert folder in architecture, f"docs/ARCHITECTURE.md's diagram lacks {folder}"
