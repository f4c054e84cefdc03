"""Checks that a pair of ONNX graphs has the inputs and outputs the contract's table requires."""

from collections.abc import Sequence
from pathlib import Path

import onnx

from modelrepo.manifest import Manifest

FLOAT = onnx.TensorProto.FLOAT


class GraphContractError(ValueError):
    """An ONNX graph whose inputs or outputs do not match the contract."""


def expected_io(manifest: Manifest) -> dict[str, tuple[dict[str, list[int]], dict[str, list[int]]]]:
    """Role -> (inputs, outputs), each name -> shape without the batch axis."""
    data, latent = list(manifest.data_shape), [manifest.latent_dim]
    if manifest.likelihood.type == "bernoulli":
        decoder_outputs = {"logits": data}
    else:
        decoder_outputs = {"mean": data, "logvar": data}
    return {
        "encoder": ({"x": data}, {"mu": latent, "logvar": latent}),
        "decoder": ({"z": latent}, decoder_outputs),
    }


def _check_values(
    where: str, values: Sequence[onnx.ValueInfoProto], expected: dict[str, list[int]]
) -> None:
    found = {value.name: value for value in values}
    missing = sorted(set(expected) - set(found))
    if missing:
        raise GraphContractError(f"{where}: missing {missing}; it has {sorted(found)}")
    for name, tail in expected.items():
        tensor = found[name].type.tensor_type
        if tensor.elem_type != FLOAT:
            raise GraphContractError(f"{where} '{name}': must be float32")
        if not tensor.HasField("shape"):
            continue  # Unknown rank: ONNX Runtime checks it when the graph runs.
        dims = tensor.shape.dim
        if len(dims) != 1 + len(tail):
            raise GraphContractError(f"{where} '{name}': rank {len(dims)}, expected [batch, *{tail}]")
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            raise GraphContractError(f"{where} '{name}': batch axis is fixed at {dims[0].dim_value}")
        for axis, (dim, want) in enumerate(zip(dims[1:], tail), start=1):
            if dim.HasField("dim_value") and dim.dim_value != want:
                raise GraphContractError(f"{where} '{name}': axis {axis} is {dim.dim_value}, expected {want}")


def check_graphs(manifest: Manifest, version_dir: Path) -> None:
    """Raise GraphContractError unless encoder and decoder keep the contract for this manifest."""
    for role, (inputs, outputs) in expected_io(manifest).items():
        path = Path(version_dir) / getattr(manifest, role)
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as exc:  # onnx raises several types for a corrupt file
            raise GraphContractError(f"{path.name}: not a readable ONNX model ({exc})") from None
        initializers = {init.name for init in graph.initializer}
        _check_values(f"{path.name} input", [v for v in graph.input if v.name not in initializers], inputs)
        _check_values(f"{path.name} output", graph.output, outputs)
