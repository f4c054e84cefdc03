"""The explorer's test repository: the shipped models as the page should show them, in a folder of the test's own.

- The shipped manifests carry their `image` entry (the digits 8x8, MNIST 28x28): the page shows them as pictures.
- `digits-numbers:1`: digits-binary:1's graphs (and reference) under a manifest without an image key, the model
  the page shows as numbers.
- With `test_references`: digits-binary and digits-numbers get a reference where they have none (synthetic scores,
  said so in its `data`; the tests compare the page with /score's answer, whatever the numbers), and
  digits-binary-discrete has none, so that /score answers it 409.
"""

import json
import shutil
from pathlib import Path

from service.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "models"
NUMBERS_MODEL = "digits-numbers"
NO_REFERENCE_MODEL = "digits-binary-discrete"
SYNTHETIC_REFERENCE = {
    "format": "vae-reference/1", "score": "loglik", "k": 200, "seed": 0,
    "scores": [round(-45.0 + 0.25 * i, 2) for i in range(120)],  # -45 .. -15.25 nats
    "data": "synthetic scores for the explorer's tests (not held-out points)",
}


def rewrite_manifest(version: Path, change) -> None:
    path = version / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def explorable_repository(target: Path, source: Path = SHIPPED, test_references: bool = False) -> Path:
    shutil.copytree(source, target)
    shutil.copytree(target / "digits-binary" / "1", target / NUMBERS_MODEL / "1")

    def as_numbers(manifest: dict) -> None:
        manifest["name"] = NUMBERS_MODEL
        manifest.pop("image", None)
        manifest["description"] = "digits-binary:1's graphs with no image key: a model the explorer shows as numbers."
    rewrite_manifest(target / NUMBERS_MODEL / "1", as_numbers)
    if test_references:
        for name in ("digits-binary", NUMBERS_MODEL):
            reference = target / name / "1" / "reference.json"
            if not reference.exists():
                reference.write_text(json.dumps(SYNTHETIC_REFERENCE))
        (target / NO_REFERENCE_MODEL / "1" / "reference.json").unlink(missing_ok=True)
    return target
