"""`OUT/sweep.json`, what a sweep is: its id, experiment, studies, storage URL (no password) and
the trial budget of each study. `hypersweep.launch` writes it and reads it back to resume;
the analysis reads it to tell a finished sweep from one with trials still owed. Both read it here.
"""
from __future__ import annotations

import json
from typing import Any

from hypersweep.results import ResultStore

MANIFEST = "sweep.json"


class ManifestError(ValueError):
    """A sweep.json that is not one: its text is why (one line)."""


def parse_manifest(text: str) -> dict[str, Any]:
    """The manifest in `text`; ManifestError unless it is a JSON object naming its experiment."""
    try:
        manifest = json.loads(text)
    except ValueError as err:
        raise ManifestError(str(err).splitlines()[0]) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("experiment"), str):
        raise ManifestError("not a sweep manifest")
    return manifest


def read_manifest(store: ResultStore) -> dict[str, Any] | None:
    """The manifest of the sweep in `store`, or None where there is none."""
    text = store.read_text(MANIFEST)
    return None if text is None else parse_manifest(text)


def owed(manifest: dict[str, Any], rows_per_study: dict[str, int]) -> int:
    """Trials the sweep still owes, given how many rows each study has."""
    return sum(max(0, budget - rows_per_study.get(study, 0)) for study, budget in manifest["budgets"].items())
