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
    manifest = {key: value for key, value in manifest.items() if value is not None}  # None: leave the key out
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


CATEGORICAL = {"latent_dim": 6, "latent": {"type": "categorical", "groups": 2, "categories": 3}, "prior": None}
MIXTURE = {"type": "mixture_of_gaussians", "logits": [0.0, 1.0], "mean": [[0.0, 1.0], [1.0, 0.0]],
           "logvar": [[0.0, 0.0], [0.5, 0.5]]}


def categorical_graphs(encoder_tail=(2, 3), decoder_tail=(2, 3)):
    """x [batch, 6] -> logits [batch, *encoder_tail]; z [batch, *decoder_tail] -> logits [batch, 6]."""
    from tests.service.handmade import affine_graph

    width = int(np.prod(encoder_tail))
    encoder = affine_graph("x", (6,), {"logits": (np.zeros((6, width)), np.zeros(width), encoder_tail)})
    decoder = affine_graph("z", decoder_tail, {"logits": (np.zeros((int(np.prod(decoder_tail)), 6)), np.zeros(6), (6,))})
    return encoder, decoder


def test_richer_manifests_load_with_their_defaults(tmp_path):
    mixture = load_manifest(write_model(tmp_path, {"prior": MIXTURE}, name="mog"))
    assert mixture.prior.type == "mixture_of_gaussians" and mixture.latent.type == "gaussian"
    assert mixture.latent_shape == (2,)
    encoder, decoder = categorical_graphs()
    folder = write_model(tmp_path, CATEGORICAL, encoder, decoder, name="cat")
    manifest = load_manifest(folder)  # no prior: uniform over the configurations
    check_graphs(manifest, folder)
    assert manifest.prior.type == "uniform_categorical" and manifest.latent_shape == (2, 3)
    assert manifest.latent.configurations == 9


@pytest.mark.parametrize("overrides, message", [
    ({**CATEGORICAL, "latent_dim": 5}, "latent_dim: is 5, but a categorical latent of 2 groups x 3 categories has 6 "
     "values; set latent_dim to groups x categories"),
    ({**CATEGORICAL, "prior": MIXTURE}, "prior: type 'mixture_of_gaussians' does not go with a categorical latent, "
     "which takes 'uniform_categorical' or 'categorical' (a missing prior means 'uniform_categorical')"),
    ({"prior": {"type": "uniform_categorical"}}, "prior: type 'uniform_categorical' does not go with a gaussian "
     "latent, which takes 'standard_normal' or 'mixture_of_gaussians'"),
    ({**CATEGORICAL, "prior": {"type": "categorical", "logits": [[0, 1, 2], [0, 1]]}},
     "prior.logits: is 2 rows of lengths [2, 3], expected [2][3]: one row per group (latent.groups=2) of "
     "latent.categories=3 numbers"),
    ({"prior": {**MIXTURE, "mean": [[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]]}}, "prior.mean: is [2][3], expected [2][2]: "
     "one row per component (C=2, the length of prior.logits) of latent_dim=2 numbers"),
    ({"prior": {**MIXTURE, "logvar": [[0.0, 0.0]]}}, "prior.logvar: is [1][2], expected [2][2]"),
    ({"prior": {**MIXTURE, "logits": []}}, "prior.logits: List should have at least 1 item"),
    ({"prior": {**MIXTURE, "mean": None}}, "prior.mean: Input should be a valid list"),
    ({"latent": {"type": "categorical", "groups": 0, "categories": 3}}, "latent.groups: Input should be greater than 0"),
    ({"latent": {"type": "poisson"}}, "latent: Input tag 'poisson' found using 'type' does not match"),
])
def test_richer_manifest_errors_name_the_key_and_the_fix(tmp_path, overrides, message):
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_model(tmp_path, overrides))
    assert message in str(caught.value)


def test_a_nan_in_a_prior_is_refused(tmp_path):
    folder = write_model(tmp_path, {"prior": {**MIXTURE, "logvar": [[0.0, 0.0], [0.5, 0.5]]}})
    text = (folder / "manifest.json").read_text().replace("0.5, 0.5", "NaN, 0.5")
    (folder / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=r"prior.logvar.1.0: Input should be a finite number"):
        load_manifest(folder)


@pytest.mark.parametrize("encoder_tail, decoder_tail, message", [
    ((6,), (2, 3), "encoder.onnx output 'logits': rank 2, expected \\[batch, \\*\\[2, 3\\]\\]"),
    ((2, 3), (3, 2), "decoder.onnx input 'z': axis 1 is 3, expected 2"),
    ((2, 3), (6,), "decoder.onnx input 'z': rank 2, expected \\[batch, \\*\\[2, 3\\]\\]"),
])
def test_categorical_graphs_must_take_and_give_groups_by_categories(tmp_path, encoder_tail, decoder_tail, message):
    encoder, decoder = categorical_graphs(encoder_tail, decoder_tail)
    folder = write_model(tmp_path, CATEGORICAL, encoder, decoder)
    with pytest.raises(GraphContractError, match=message):
        check_graphs(load_manifest(folder), folder)


def autoregressive_decoder(outputs=("logits",), z_dim=2, x_dim=6, extra_input=None):
    """z [batch, z_dim], x [batch, x_dim] -> each output = z @ A + x @ B + c, B strictly upper triangular, so the
    output at position d reads x only before d (MADE's mask)."""
    rng = np.random.default_rng(1)
    mask = np.triu(np.ones((x_dim, 6)), k=1)  # (x_dim, 6): row j feeds column d only when j < d
    nodes, inits, values = [], [], []
    for name in outputs:
        inits += [numpy_helper.from_array(rng.standard_normal((z_dim, 6)).astype(np.float32), f"A_{name}"),
                  numpy_helper.from_array((rng.standard_normal((x_dim, 6)) * mask).astype(np.float32), f"B_{name}")]
        nodes += [helper.make_node("MatMul", ["z", f"A_{name}"], [f"za_{name}"]),
                  helper.make_node("MatMul", ["x", f"B_{name}"], [f"xb_{name}"]),
                  helper.make_node("Add", [f"za_{name}", f"xb_{name}"], [name])]
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 6]))
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", z_dim]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", x_dim])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info(extra_input, TensorProto.FLOAT, ["batch", 1]))
    graph = helper.make_graph(nodes, "hand-ar", inputs, values, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


AR_BERNOULLI = {"likelihood": {"type": "bernoulli", "autoregressive": True}}
AR_GAUSSIAN = {"likelihood": {"type": "gaussian", "autoregressive": True}}


@pytest.mark.parametrize("overrides, outputs", [(AR_BERNOULLI, ("logits",)), (AR_GAUSSIAN, ("mean", "logvar"))])
def test_autoregressive_decoders_take_z_and_x(tmp_path, overrides, outputs):
    folder = write_model(tmp_path, overrides, decoder=autoregressive_decoder(outputs))
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)
    assert manifest.likelihood.autoregressive is True
    assert load_manifest(write_model(tmp_path, name="plain")).likelihood.autoregressive is False


@pytest.mark.parametrize("overrides, decoder, message", [
    (AR_BERNOULLI, None, "decoder.onnx input: missing ['x']; it has ['z']. manifest.json says "
     "likelihood.autoregressive: true, so the decoder must take 'x' [batch, *[6]] beside 'z': add that input to the "
     "graph, or drop likelihood.autoregressive for a decoder of z alone"),
    ({}, autoregressive_decoder(), "decoder.onnx input 'x': a decoder that takes x is autoregressive, but "
     'manifest.json does not say so: set "likelihood": {"type": "bernoulli", "autoregressive": true} (or remove the '
     "input 'x')"),
    (AR_BERNOULLI, autoregressive_decoder(x_dim=5), "decoder.onnx input 'x': axis 1 is 5, expected 6"),
    (AR_BERNOULLI, autoregressive_decoder(z_dim=3), "decoder.onnx input 'z': axis 1 is 3, expected 2"),
    (AR_GAUSSIAN, autoregressive_decoder(), "decoder.onnx output: missing ['logvar', 'mean']"),
    (AR_BERNOULLI, autoregressive_decoder(extra_input="t"), "decoder.onnx input: ['t'] are not in the contract, "
     "which feeds only ['x', 'z']"),
])
def test_autoregressive_graph_errors_name_the_key_and_the_fix(tmp_path, overrides, decoder, message):
    folder = write_model(tmp_path, overrides, decoder=decoder)
    with pytest.raises(GraphContractError) as caught:
        check_graphs(load_manifest(folder), folder)
    assert message in str(caught.value)


def test_autoregressive_must_be_a_boolean(tmp_path):
    folder = write_model(tmp_path, {"likelihood": {"type": "bernoulli", "autoregressive": "yes"}})
    with pytest.raises(ManifestError, match="likelihood.autoregressive: Input should be a valid boolean"):
        load_manifest(folder)
