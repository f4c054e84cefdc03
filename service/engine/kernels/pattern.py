"""A model graph read as a multi-layer perceptron, or refused with the reason.

    input [batch, *shape] --flatten--> layer_1 --> ... --> layer_n --> outputs (column ranges of layer_n)
    layer_i: h = activation(h @ W + b)      W (in, out) float32, b (out,)

Recognised: MatMul with a constant right-hand side, Add of a constant bias, Gemm (alpha, beta, transB; not
transA), the activations in ACTIVATIONS between layers, Flatten/Reshape that only keep the rows' flat layout,
Identity, and Split of the last layer's columns into the graph's outputs (or separate last layers that read the
same hidden layer, one per output). Anything else raises PatternRefused with the node that stopped it: the
kernel tier then leaves the model to ONNX Runtime.
"""

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

# op -> (activation name, its default parameter)
ACTIVATIONS = {"Relu": ("relu", 0.0), "LeakyRelu": ("leaky_relu", 0.01), "Tanh": ("tanh", 0.0),
               "Sigmoid": ("sigmoid", 0.0), "Softplus": ("softplus", 0.0), "Elu": ("elu", 1.0)}
SHAPE_ONLY = ("Flatten", "Reshape", "Identity")


class PatternRefused(ValueError):
    """The graph is not an MLP the kernels compile; the message says which node and why."""


@dataclass(eq=False)  # identity, not value, equality: two heads share a hidden layer only if it is the same one
class Layer:
    weight: np.ndarray  # (in, out) float32
    bias: np.ndarray  # (out,) float32
    activation: str | None = None  # None: linear, still open for a bias or an activation
    alpha: float = 0.0  # LeakyRelu's slope, Elu's scale


@dataclass(frozen=True)
class _Value:
    """What a tensor of the graph is: the input after `layers`, or a column range of the last one."""

    layers: tuple[Layer, ...]
    columns: slice | None = None  # set by Split: only these columns of the last layer


@dataclass
class Perceptron:
    """hidden: layers applied to the flat input; heads: output name -> (in, width) weight, bias, each linear."""

    hidden: list[Layer]
    heads: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def input_width(self) -> int:
        return self.hidden[0].weight.shape[0] if self.hidden else next(iter(self.heads.values()))[0].shape[0]


def read_perceptron(model: onnx.ModelProto, input_name: str, output_names: tuple[str, ...]) -> Perceptron:
    """The graph as hidden layers and one linear head per output, or PatternRefused."""
    graph = model.graph
    if model.functions:
        raise PatternRefused("it calls local functions")
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values = {input_name: _Value(())}
    for node in graph.node:
        where = f"node {node.name or node.op_type} ({node.op_type})"
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_node_value(node, where)
            continue
        tensors = [name for name in node.input if name and name not in constants]
        if len(tensors) != 1 or tensors[0] not in values:
            raise PatternRefused(f"{where} does not read exactly one tensor computed from the input")
        value = values[tensors[0]]
        results = _apply(node, value, constants, where)
        for name, result in zip(node.output, results):
            values[name] = result
    return _perceptron(values, output_names)


def _apply(node, value: _Value, constants: dict, where: str) -> list[_Value]:
    op, attributes = node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if value.columns is not None and op not in ("Identity", "Reshape"):
        raise PatternRefused(f"{where} works on part of a layer's output; only the outputs may be split")
    if op == "MatMul":
        if node.input[0] not in constants and node.input[1] in constants:
            weight = constants[node.input[1]].astype(np.float32)
            return [_with_layer(value, weight, np.zeros(weight.shape[-1], np.float32), where)]
        raise PatternRefused(f"{where} is not input @ constant")
    if op == "Gemm":
        if attributes.get("transA", 0) or node.input[0] in constants or node.input[1] not in constants:
            raise PatternRefused(f"{where} is not input @ constant (transA or a computed weight)")
        weight = constants[node.input[1]].astype(np.float32) * np.float32(attributes.get("alpha", 1.0))
        weight = weight.T if attributes.get("transB", 0) else weight
        bias = np.zeros(weight.shape[1], np.float32)
        if len(node.input) > 2 and node.input[2]:
            bias = bias + np.float32(attributes.get("beta", 1.0)) * constants[node.input[2]].astype(np.float32)
        return [_with_layer(value, weight, _bias_vector(bias, weight.shape[1], where), where)]
    if op == "Add":
        last = _open_layer(value, where)
        constant = next(constants[name] for name in node.input if name in constants)
        last.bias = last.bias + _bias_vector(constant.astype(np.float32), last.weight.shape[1], where)
        return [value]
    if op in ACTIVATIONS:
        last = _open_layer(value, where)
        last.activation, default = ACTIVATIONS[op]
        last.alpha = float(attributes.get("alpha", default))
        if op == "Elu" and last.alpha != 1.0:
            raise PatternRefused(f"{where} has alpha {last.alpha}; the kernels apply Elu with alpha 1")
        return [value]
    if op in SHAPE_ONLY:
        _check_flat(node, op, attributes, constants, where)
        return [value]
    if op == "Split":
        return _split(node, value, attributes, constants, where)
    raise PatternRefused(f"{where}: {op} is not an op of the MLP pattern (MatMul/Gemm, Add, "
                         f"{'/'.join(ACTIVATIONS)}, Flatten/Reshape, Split of the outputs)")


def _with_layer(value: _Value, weight: np.ndarray, bias: np.ndarray, where: str) -> _Value:
    if weight.ndim != 2:
        raise PatternRefused(f"{where} has a weight of {weight.ndim} dimensions, not 2")
    if value.layers and value.layers[-1].activation is None:
        value.layers[-1].activation = "identity"  # two linear layers in a row: the first one closes as it is
    width = value.layers[-1].weight.shape[1] if value.layers else None
    if width is not None and weight.shape[0] != width:
        raise PatternRefused(f"{where} takes {weight.shape[0]} inputs after a layer of {width}")
    return _Value((*value.layers, Layer(weight, bias)))


def _open_layer(value: _Value, where: str) -> Layer:
    if not value.layers or value.layers[-1].activation is not None:
        raise PatternRefused(f"{where} does not follow a MatMul or Gemm directly")
    return value.layers[-1]


def _bias_vector(bias: np.ndarray, width: int, where: str) -> np.ndarray:
    if bias.size == 1:
        return np.full(width, bias.reshape(()), np.float32)
    if bias.size != width or (bias.ndim == 2 and bias.shape[0] != 1) or bias.ndim > 2:
        raise PatternRefused(f"{where} adds a constant of shape {list(bias.shape)} to {width} columns")
    return bias.reshape(width).astype(np.float32)


def _check_flat(node, op: str, attributes: dict, constants: dict, where: str) -> None:
    """Flatten at axis 1 and Reshape to [-1 or 0, ...] keep each row's values in order: no-ops on flat rows."""
    if op == "Flatten" and attributes.get("axis", 1) != 1:
        raise PatternRefused(f"{where} flattens at axis {attributes['axis']}, not 1")
    if op == "Reshape":
        shape = constants.get(node.input[1]) if len(node.input) > 1 else None
        if shape is None or shape.ndim != 1 or shape.size < 2 or shape[0] not in (-1, 0) or (shape[1:] <= 0).any():
            raise PatternRefused(f"{where} reshapes to {None if shape is None else shape.tolist()}, not [batch, ...]")


def _split(node, value: _Value, attributes: dict, constants: dict, where: str) -> list[_Value]:
    if attributes.get("axis", 0) not in (1, -1) or not value.layers:
        raise PatternRefused(f"{where} does not split a layer's columns (axis 1)")
    width = value.layers[-1].weight.shape[1]
    sizes = attributes.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = constants[node.input[1]].tolist()
    if sizes is None:
        if width % len(node.output):
            raise PatternRefused(f"{where} splits {width} columns into {len(node.output)} equal parts")
        sizes = [width // len(node.output)] * len(node.output)
    starts = np.cumsum([0, *sizes])
    return [_Value(value.layers, slice(int(a), int(b))) for a, b in zip(starts[:-1], starts[1:])]


def _perceptron(values: dict, output_names: tuple[str, ...]) -> Perceptron:
    missing = [name for name in output_names if name not in values]
    if missing:
        raise PatternRefused(f"output {missing[0]!r} is not computed from the input by the pattern's ops")
    outputs = [values[name] for name in output_names]
    hidden = outputs[0].layers[:-1]
    if not outputs[0].layers or any(o.layers[:-1] != hidden or not o.layers for o in outputs):
        raise PatternRefused("the outputs do not come from one stack of layers")
    heads = {}
    for name, value in zip(output_names, outputs):
        last = value.layers[-1]
        if last.activation not in (None, "identity"):
            raise PatternRefused(f"output {name!r} passes through {last.activation}; the kernels read the "
                                 "likelihood's parameters from a linear last layer")
        columns = value.columns or slice(0, last.weight.shape[1])
        heads[name] = (np.ascontiguousarray(last.weight[:, columns]), last.bias[columns].copy())
    for layer in hidden:
        layer.activation = layer.activation or "identity"
    return Perceptron(list(hidden), heads)


def _constant_node_value(node, where: str) -> np.ndarray:
    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_int"):
            return np.asarray(onnx.helper.get_attribute_value(attribute))
        if attribute.name in ("value_floats", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attribute))
    raise PatternRefused(f"{where} holds a kind of constant the pattern does not read")
