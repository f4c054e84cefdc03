"""Checks that a pair of ONNX graphs has the inputs and outputs the contract's table requires."""

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx.external_data_helper import uses_external_data

from modelrepo.contract import DECODER_CONDITION, DECODER_INPUT, DECODER_OUTPUTS, ENCODER_INPUT, FORMAT
from modelrepo.manifest import Manifest, encoder_outputs

FLOAT = onnx.TensorProto.FLOAT


class GraphContractError(ValueError):
    """An ONNX graph whose inputs or outputs do not match the contract."""


def expected_io(manifest: Manifest) -> dict[str, tuple[dict[str, list[int]], dict[str, list[int]]]]:
    """Role -> (inputs, outputs), each name -> shape without the batch axis. A latent point is [latent_dim], or
    [groups, categories] for categorical latents (the encoder's logits and the decoder's z alike). An
    autoregressive decoder takes x [batch, *data_shape] beside z."""
    data, latent = list(manifest.data_shape), list(manifest.latent_shape)
    decoder_inputs = {DECODER_INPUT: latent}
    if manifest.likelihood.autoregressive:
        decoder_inputs[DECODER_CONDITION] = data
    return {
        "encoder": ({ENCODER_INPUT: data}, dict.fromkeys(encoder_outputs(manifest), latent)),
        "decoder": (decoder_inputs, dict.fromkeys(DECODER_OUTPUTS[manifest.likelihood.type], data)),
    }


def _check_autoregressive(manifest: Manifest, decoder_inputs: set[str]) -> None:
    """The decoder takes x exactly when the manifest says likelihood.autoregressive: a mismatch either way names
    the key and the fix (ONNX Runtime would otherwise fail on every request with a missing or unknown input)."""
    takes_x, says_so = DECODER_CONDITION in decoder_inputs, manifest.likelihood.autoregressive
    if says_so and not takes_x:
        raise GraphContractError(
            f"{manifest.decoder} input: missing ['{DECODER_CONDITION}']; it has {sorted(decoder_inputs)}. "
            f"manifest.json says likelihood.autoregressive: true, so the decoder must take "
            f"'{DECODER_CONDITION}' [batch, *{list(manifest.data_shape)}] beside '{DECODER_INPUT}': add that input "
            "to the graph, or drop likelihood.autoregressive for a decoder of z alone")
    if takes_x and not says_so:
        raise GraphContractError(
            f"{manifest.decoder} input '{DECODER_CONDITION}': a decoder that takes x is autoregressive, but "
            "manifest.json does not say so: set \"likelihood\": {\"type\": "
            f"\"{manifest.likelihood.type}\", \"autoregressive\": true}} (or remove the input '{DECODER_CONDITION}')")


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
        graph_inputs = [v for v in graph.input if v.name not in initializers]
        if role == "decoder":
            _check_autoregressive(manifest, {v.name for v in graph_inputs})
        _check_values(f"{file_name} input", graph_inputs, inputs)
        unknown = sorted({v.name for v in graph_inputs} - set(inputs))
        if unknown:
            raise GraphContractError(f"{file_name} input: {unknown} are not in the contract, which feeds only "
                                     f"{sorted(inputs)}; remove them or give them initializers")
        _check_values(f"{file_name} output", graph.output, outputs)
