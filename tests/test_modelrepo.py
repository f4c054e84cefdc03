"""The vae-onnx/1 contract checks, on models built by hand with onnx.helper."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelrepo import GraphContractError, ManifestError, check_graphs, load_manifest


def linear_graph(input_name, in_dim, outputs, out_dim, batch="batch"):
    """input [batch, in_dim] -> each output = input @ W_o, [batch, out_dim]."""
    rng = np.random.default_rng(0)
    nodes, inits, values = [], [], []
    for name in outputs:
        weight = numpy_helper.from_array(rng.standard_normal((in_dim, out_dim)).astype(np.float32), f"W_{name}")
        inits.append(weight)
        nodes.append(helper.make_node("MatMul", [input_name, f"W_{name}"], [name]))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, out_dim]))
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, in_dim])],
                              values, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_model(root, manifest_overrides=None, encoder=None, decoder=None, name="hand", version="1"):
    folder = root / name / version
    folder.mkdir(parents=True)
    manifest = {"format": "vae-onnx/1", "name": name, "version": int(version) if version.isdigit() else version,
                "data_shape": [6], "latent_dim": 2, "likelihood": {"type": "bernoulli"},
                "prior": {"type": "standard_normal"}, "encoder": "encoder.onnx", "decoder": "decoder.onnx"}
    manifest.update(manifest_overrides or {})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    onnx.save(encoder or linear_graph("x", 6, ["mu", "logvar"], 2), str(folder / "encoder.onnx"))
    onnx.save(decoder or linear_graph("z", 2, ["logits"], 6), str(folder / "decoder.onnx"))
    return folder


def test_hand_built_model_keeps_the_contract(tmp_path):
    folder = write_model(tmp_path, {"description": "by hand", "anything": [1, 2]})
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)
    assert manifest.anything == [1, 2]  # further keys are kept


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"format": "vae-onnx/2"}, "format"),
        ({"name": "other"}, "lives in hand/1"),
        ({"version": 0}, "version"),
        ({"data_shape": []}, "data_shape"),
        ({"latent_dim": -1}, "latent_dim"),
        ({"likelihood": {"type": "poisson"}}, "likelihood"),
        ({"prior": {"type": "laplace"}}, "prior"),
        ({"encoder": "../../escape.onnx"}, "file name in the model folder"),
        ({"decoder": "absent.onnx"}, "decoder file 'absent.onnx' is missing"),
    ],
)
def test_manifest_errors_name_the_field(tmp_path, overrides, message):
    folder = write_model(tmp_path, overrides)
    with pytest.raises(ManifestError, match=message):
        load_manifest(folder)


def test_unreadable_manifest(tmp_path):
    folder = write_model(tmp_path)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not readable JSON"):
        load_manifest(folder)


@pytest.mark.parametrize(
    "encoder, decoder, message",
    [
        (linear_graph("input", 6, ["mu", "logvar"], 2), None, "missing \\['x'\\]"),
        (linear_graph("x", 6, ["mu"], 2), None, "missing \\['logvar'\\]"),
        (linear_graph("x", 5, ["mu", "logvar"], 2), None, "axis 1 is 5, expected 6"),
        (linear_graph("x", 6, ["mu", "logvar"], 2, batch=4), None, "batch axis is fixed"),
        (None, linear_graph("z", 2, ["mean", "logvar"], 6), "missing \\['logits'\\]"),
        (None, linear_graph("z", 3, ["logits"], 6), "axis 1 is 3, expected 2"),
    ],
)
def test_graphs_that_break_the_contract(tmp_path, encoder, decoder, message):
    folder = write_model(tmp_path, encoder=encoder, decoder=decoder)
    with pytest.raises(GraphContractError, match=message):
        check_graphs(load_manifest(folder), folder)


def test_corrupt_graph_file(tmp_path):
    folder = write_model(tmp_path)
    (folder / "decoder.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(GraphContractError, match="not a readable ONNX model"):
        check_graphs(load_manifest(folder), folder)
