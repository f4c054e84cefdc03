"""The model repository format `vae-onnx/1` (shared/CONTRACT.md), shared by training/ and service/: its names
(contract), manifests (manifest), graph checks (graphs), and the model's math in NumPy (likelihood, importance)."""

from modelrepo.contract import FORMAT
from modelrepo.graphs import GraphContractError, check_graph_bytes, check_graphs
from modelrepo.manifest import (
    IntegrityError,
    Manifest,
    ManifestError,
    VersionFiles,
    load_manifest,
    read_version,
    sha256_of,
)

__all__ = [
    "FORMAT",
    "Manifest",
    "ManifestError",
    "IntegrityError",
    "VersionFiles",
    "load_manifest",
    "read_version",
    "sha256_of",
    "GraphContractError",
    "check_graphs",
    "check_graph_bytes",
]
