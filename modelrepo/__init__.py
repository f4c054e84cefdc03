"""The model repository format `vae-onnx/1` (shared/CONTRACT.md), shared by training/ and service/."""

from modelrepo.manifest import FORMAT, Manifest, ManifestError, load_manifest, sha256_of
from modelrepo.graphs import GraphContractError, check_graphs

__all__ = [
    "FORMAT",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "sha256_of",
    "GraphContractError",
    "check_graphs",
]
