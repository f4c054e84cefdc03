"""Checks that a pair of ONNX graphs has the inputs and outputs the contract's table requires."""

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx.external_data_helper import uses_external_data

from modelrepo.contract import DECODER_INPUT, DECODER_OUTPUTS, ENCODER_INPUT, FORMAT
from modelrepo.manifest import Manifest, encoder_outputs

FLOAT = onnx.TensorProto.FLOAT


class GraphContractError(ValueError):
    """An ONNX graph whose inputs or outputs do not match the contract."""


def expected_io(manifest: Manifest) -> dict[str, tuple[dict[str, list[int]], dict[str, list[int]]]]:
    """Role -> (inputs, outputs), each name -> shape without the batch axis. A latent point is [latent_dim], or
    [groups, categories] for categorical latents (the encoder's logits and the decoder's z alike)."""
    data, latent = list(manifest.data_shape), list(manifest.latent_shape)
    return {
        "encoder": ({ENCODER_INPUT: data}, dict.fromkeys(encoder_outputs(manifest), latent)),
        "decoder": ({DECODER_INPUT: latent}, dict.fromkeys(DECODER_OUTPUTS[manifest.likelihood.type], data)),
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
    folder = Path(version_dir)
    check_graph_bytes(manifest, (folder / manifest.encoder).read_bytes(), (folder / manifest.decoder).read_bytes())


def check_graph_bytes(manifest: Manifest, encoder: bytes, decoder: bytes) -> None:
    """The same check on the graphs' bytes as read (the bytes the service then hashes and loads)."""
    for role, content in (("encoder", encoder), ("decoder", decoder)):
        inputs, outputs = expected_io(manifest)[role]
        file_name = getattr(manifest, role)
        try:
            graph = onnx.load_from_string(content).graph
        except Exception as exc:  # onnx raises several types for a corrupt file
            raise GraphContractError(f"{file_name}: not a readable ONNX model ({exc})") from None
        external = [init.name for init in graph.initializer if uses_external_data(init)]
        if external:
            raise GraphContractError(f"{file_name}: initializers {external[:3]} are stored in external files; a "
                                     f"{FORMAT} graph holds its weights (onnx.save(..., save_as_external_data=False))")
        initializers = {init.name for init in graph.initializer}
        _check_values(f"{file_name} input", [v for v in graph.input if v.name not in initializers], inputs)
        _check_values(f"{file_name} output", graph.output, outputs)
