"""A model graph read as a multi-layer perceptron, or refused with the reason.

    input [batch, *shape] --flatten--> layer_1 --> ... --> layer_n --> outputs (column ranges of layer_n)
    layer_i: h = activation(h @ W + b)      W (in, out) float32, b (out,)
    output:  tail(h_{n-1} @ W_o + b_o)     tail: up to MAX_TAIL elementwise steps, each with one number

Recognised: MatMul with a constant right-hand side, Add of a constant bias, Gemm (alpha, beta, transB; not
transA), the activations in ACTIVATIONS between layers, Flatten/Reshape that only keep the rows' flat layout,
Identity, and Split of the last layer's columns into the graph's outputs (or separate last layers that read the
same hidden layer, one per output). After the last layer (before or after the Split) each output may pass through
an elementwise tail: Add/Sub/Mul/Div by a constant, Neg, Max/Min with a constant, Clip, the activations, and
PyTorch's thresholded softplus Where(Greater(v, t), v, Softplus(v)). training/'s Gaussian decoders export their
soft-clamped log-variance, floor + softplus(raw - floor), as such a tail: Sub, Softplus, Greater, Where, Add.
Per-column constants and affine steps that come first fold into the head's weight and bias; the rest of the tail
is what the kernels apply (engine.kernels.triton_mlp). Anything else raises PatternRefused with the node that
stopped it: the kernel tier then leaves the model to ONNX Runtime.
"""

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

# op -> (activation name, its default parameter)
ACTIVATIONS = {"Relu": ("relu", 0.0), "LeakyRelu": ("leaky_relu", 0.01), "Tanh": ("tanh", 0.0),
               "Sigmoid": ("sigmoid", 0.0), "Softplus": ("softplus", 0.0), "Elu": ("elu", 1.0)}
SHAPE_ONLY = ("Flatten", "Reshape", "Identity")
ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Max", "Min")  # with one constant operand
# The steps a tail is made of: the activations' names, and these, each with its one number
STEPS = (*(name for name, _ in ACTIVATIONS.values()), "add", "mul", "max", "min", "softplus_above")
MAX_TAIL = 3  # steps per output after folding: the kernels' fixed number of slots


class PatternRefused(ValueError):
    """The graph is not an MLP the kernels compile; the message says which node and why."""


@dataclass(eq=False)  # identity, not value, equality: two heads share a hidden layer only if it is the same one
class Layer:
    weight: np.ndarray  # (in, out) float32
    bias: np.ndarray  # (out,) float32
    activation: str | None = None  # None: linear, still open for a bias or an activation
    alpha: float = 0.0  # LeakyRelu's slope, Elu's scale


# One elementwise step: (name in STEPS, its number: the constant added or multiplied, the bound, LeakyRelu's
# slope, the softplus threshold). While a step is being read its number may be a per-column array.
Step = tuple[str, float]


@dataclass(frozen=True)
class _Value:
    """What a tensor of the graph is: the input after `layers`, or a column range of the last one, then `tail`."""

    layers: tuple[Layer, ...]
    columns: slice | None = None  # set by Split: only these columns of the last layer
    tail: tuple = ()  # elementwise steps after the last layer, (name, number or per-column array)

    def __eq__(self, other) -> bool:  # the arrays of a tail compare by value
        return (isinstance(other, _Value) and self.layers == other.layers and self.columns == other.columns
                and len(self.tail) == len(other.tail)
                and all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(self.tail, other.tail)))


@dataclass(frozen=True)
class _Comparison:
    """Greater(value, threshold): only ever read by the Where of PyTorch's thresholded softplus."""

    value: _Value
    threshold: float


@dataclass
class Head:
    """An output: tail(h @ weight + bias). weight (in, width), bias (width,) float32; tail: scalar steps."""

    weight: np.ndarray
    bias: np.ndarray
    tail: tuple[Step, ...] = ()


@dataclass
class Perceptron:
    """hidden: layers applied to the flat input; heads: output name -> its last layer and tail."""

    hidden: list[Layer]
    heads: dict[str, Head] = field(default_factory=dict)

    @property
    def input_width(self) -> int:
        return self.hidden[0].weight.shape[0] if self.hidden else next(iter(self.heads.values())).weight.shape[0]


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
        if any(name not in values for name in tensors) or not tensors:
            raise PatternRefused(f"{where} reads a tensor that is not computed from the input by the pattern's ops")
        if node.op_type == "Where":
            results = [_thresholded_softplus(node, values, where)]
        elif len(tensors) != 1:
            raise PatternRefused(f"{where} reads {len(tensors)} tensors computed from the input, not one")
        elif isinstance(values[tensors[0]], _Comparison):
            raise PatternRefused(f"{where} reads a comparison; only Where(Greater(v, t), v, Softplus(v)) may")
        else:
            results = _apply(node, values[tensors[0]], constants, where)
        for name, result in zip(node.output, results):
            values[name] = result
    return _perceptron(values, output_names)


def _apply(node, value: _Value, constants: dict, where: str) -> list[_Value]:
    op, attributes = node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if value.columns is not None and op in ("MatMul", "Gemm", "Split"):
        raise PatternRefused(f"{where} works on part of a layer's output; only the outputs may be split")
    if value.tail and op in ("MatMul", "Gemm", "Split"):
        raise PatternRefused(f"{where} follows an elementwise tail ({_names(value.tail)}); between layers the "
                             "kernels apply one bias and one activation")
    opened = value.columns is None and not value.tail and value.layers and value.layers[-1].activation is None
    if op == "Add" and opened:  # the bias of the layer just read
        last = value.layers[-1]
        constant = next(constants[name] for name in node.input if name in constants)
        last.bias = last.bias + _bias_vector(constant.astype(np.float32), last.weight.shape[1], where)
        return [value]
    if op in ACTIVATIONS and opened:  # the activation of the layer just read
        last = value.layers[-1]
        last.activation, default = ACTIVATIONS[op]
        last.alpha = float(attributes.get("alpha", default))
        if op == "Elu" and last.alpha != 1.0:
            raise PatternRefused(f"{where} has alpha {last.alpha}; the kernels apply Elu with alpha 1")
        return [value]
    if op in ARITHMETIC or op in ACTIVATIONS or op in ("Neg", "Clip"):
        if not value.layers:
            raise PatternRefused(f"{where} works on the input itself, before any layer")
        return [_Value(value.layers, value.columns, value.tail + _steps(node, op, attributes, constants, where))]
    if op == "Greater":
        threshold = constants.get(node.input[1])
        if node.input[0] in constants or threshold is None or threshold.size != 1:
            raise PatternRefused(f"{where} does not compare a tensor with one constant number")
        return [_Comparison(value, float(threshold.reshape(())))]
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
    if op in SHAPE_ONLY:
        _check_flat(node, op, attributes, constants, where)
        return [value]
    if op == "Split":
        return _split(node, value, attributes, constants, where)
    raise PatternRefused(f"{where}: {op} is not an op of the MLP pattern (MatMul/Gemm, Add, "
                         f"{'/'.join(ACTIVATIONS)}, Flatten/Reshape, Split of the outputs, and after the last "
                         f"layer {'/'.join(ARITHMETIC)}/Neg/Clip with constants)")


def _steps(node, op: str, attributes: dict, constants: dict, where: str) -> tuple:
    """The tail steps of one elementwise node on a tensor v and constants."""
    if op in ACTIVATIONS:
        name, default = ACTIVATIONS[op]
        alpha = float(attributes.get("alpha", default))
        if op == "Elu" and alpha != 1.0:
            raise PatternRefused(f"{where} has alpha {alpha}; the kernels apply Elu with alpha 1")
        return ((name, alpha),)
    if op == "Neg":
        return (("mul", -1.0),)
    if op == "Clip":  # bounds as inputs (opset 11+) or attributes (before)
        low, high = (constants.get(node.input[i]) if len(node.input) > i and node.input[i] else None for i in (1, 2))
        low = low if low is not None else attributes.get("min")
        high = high if high is not None else attributes.get("max")
        return tuple((name, _number(bound, where)) for name, bound in (("max", low), ("min", high))
                     if bound is not None)
    constant_first = node.input[0] in constants
    constant = np.asarray(constants[node.input[0 if constant_first else 1]], np.float64)
    if constant.ndim > 2 or (constant.ndim == 2 and constant.shape[0] != 1):
        raise PatternRefused(f"{where} uses a constant of shape {list(constant.shape)}, not one number per column")
    constant = constant.reshape(-1) if constant.size > 1 else float(constant.reshape(()))
    if op == "Add":
        return (("add", constant),)
    if op == "Mul":
        return (("mul", constant),)
    if op in ("Max", "Min"):
        return ((op.lower(), constant),)
    if op == "Sub":
        return (("mul", -1.0), ("add", constant)) if constant_first else (("add", -constant),)
    if constant_first:  # Div: c / v
        raise PatternRefused(f"{where} divides a constant by a tensor; the tails take no reciprocal")
    return (("mul", 1.0 / constant),)


def _number(bound, where: str) -> float:
    bound = np.asarray(bound)
    if bound.size != 1:
        raise PatternRefused(f"{where} clips to {bound.size} bounds, not one number")
    return float(bound.reshape(()))


def _thresholded_softplus(node, values: dict, where: str) -> _Value:
    """Where(Greater(v, t), v, Softplus(v)): torch.nn.functional.softplus's export, v past t taken as it is."""
    condition, above, below = (values.get(name) for name in node.input)
    if not (isinstance(condition, _Comparison) and isinstance(above, _Value) and isinstance(below, _Value)
            and above == condition.value and below.layers == above.layers and below.columns == above.columns
            and below.tail[:-1] == above.tail and below.tail[-1:] == (("softplus", 0.0),)
            and len(below.tail) == len(above.tail) + 1):
        raise PatternRefused(f"{where} is not Where(Greater(v, t), v, Softplus(v)), PyTorch's thresholded softplus")
    return _Value(above.layers, above.columns, above.tail + (("softplus_above", condition.threshold),))


def _names(tail: tuple) -> str:
    return ", ".join(name for name, _ in tail)


def _with_layer(value: _Value, weight: np.ndarray, bias: np.ndarray, where: str) -> _Value:
    if weight.ndim != 2:
        raise PatternRefused(f"{where} has a weight of {weight.ndim} dimensions, not 2")
    if value.layers and value.layers[-1].activation is None:
        value.layers[-1].activation = "identity"  # two linear layers in a row: the first one closes as it is
    width = value.layers[-1].weight.shape[1] if value.layers else None
    if width is not None and weight.shape[0] != width:
        raise PatternRefused(f"{where} takes {weight.shape[0]} inputs after a layer of {width}")
    return _Value((*value.layers, Layer(weight, bias)))


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
        columns = value.columns or slice(0, last.weight.shape[1])
        tail = value.tail
        if last.activation not in (None, "identity"):  # an activation on the whole last layer: its tail's start
            tail = ((last.activation, last.alpha), *tail)
        heads[name] = _head(name, last.weight[:, columns].astype(np.float64), last.bias[columns].astype(np.float64),
                            tail)
    for layer in hidden:
        layer.activation = layer.activation or "identity"
    return Perceptron(list(hidden), heads)


def _head(name: str, weight: np.ndarray, bias: np.ndarray, tail: tuple) -> Head:
    """The affine steps that come first fold into weight and bias (in float64, rounded once); the rest must be
    scalar steps, at most MAX_TAIL of them."""
    while tail and tail[0][0] in ("add", "mul"):
        step, number = tail[0]
        if step == "add":
            bias = bias + number
        else:
            weight, bias = weight * number, bias * number
        tail = tail[1:]
    if any(np.ndim(number) for _, number in tail):
        raise PatternRefused(f"output {name!r} has a per-column constant after a nonlinear step "
                             f"({_names(tail)}); the kernels' tails take one number per step")
    if len(tail) > MAX_TAIL:
        raise PatternRefused(f"output {name!r} has a tail of {len(tail)} elementwise steps ({_names(tail)}); the "
                             f"kernels apply at most {MAX_TAIL}")
    width = weight.shape[1]
    if np.ndim(bias) == 0:
        bias = np.full(width, bias)
    return Head(np.ascontiguousarray(weight, np.float32), np.asarray(bias, np.float32).reshape(width),
                tuple((step, float(number)) for step, number in tail))


def _constant_node_value(node, where: str) -> np.ndarray:
    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_int"):
            return np.asarray(onnx.helper.get_attribute_value(attribute))
        if attribute.name in ("value_floats", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attribute))
    raise PatternRefused(f"{where} holds a kind of constant the pattern does not read")
