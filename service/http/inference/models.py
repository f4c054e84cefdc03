"""The protocol's models: each operation of a version is one, named `<name>.<operation>` (split at the last dot),
and what its metadata says of it: inputs and outputs with their datatypes and shapes (-1 for a length the request
decides), and the request parameters it takes."""

import re
from dataclasses import dataclass

from pydantic import BaseModel

from modelrepo.contract import MODEL_VERSION, NAME_PATTERN

from service.engine.engine import ModelEngine
from service.errors import ModelNotFound
from service.http import operations
from service.http.operations import Operation
from service.http.schemas import DecodeParams, EncodeParams, LoglikParams, SampleRequest, ScoreParams

BATCH = -1


@dataclass(frozen=True)
class OperationSpec:
    run: Operation
    params: type[BaseModel]  # the operation's parameters, as the service's own API validates them (model included)
    array: str | None  # the one input tensor's name, or None (sample takes none)
    parameters: dict[str, str]  # request parameter -> its datatype


OPERATIONS = {
    "encode": OperationSpec(operations.encode, EncodeParams, "x", {"samples": "INT64", "seed": "INT64"}),
    "decode": OperationSpec(operations.decode, DecodeParams, "z", {"seed": "INT64"}),
    "sample": OperationSpec(operations.sample, SampleRequest, None,
                            {"n": "INT64", "seed": "INT64", "temperature": "FP64", "mode": "BYTES"}),
    "loglik": OperationSpec(operations.loglik, LoglikParams, "x", {"k": "INT64", "seed": "INT64"}),
    "score": OperationSpec(operations.score, ScoreParams, "x", {"fpr": "FP64", "features": "BOOL"}),
}
FP64_OUTPUTS = frozenset({"loglik", "stderr", "elbo", "score", "p_value", "background_loglik"})
BOOL_OUTPUTS = frozenset({"is_outlier"})


def output_datatype(name: str) -> str:
    """CONTRACT section 5: log-likelihoods, scores and p-values FP64, is_outlier BOOL, every other array FP32."""
    return "FP64" if name in FP64_OUTPUTS else "BOOL" if name in BOOL_OUTPUTS else "FP32"


@dataclass(frozen=True)
class ProtocolModel:
    protocol_name: str  # "<name>.<operation>", as the URL gives it
    name: str
    operation: str
    version: int | None  # None: the name's highest version

    @classmethod
    def parse(cls, protocol_name: str, version: str | None = None) -> "ProtocolModel":
        name, dot, operation = protocol_name.rpartition(".")
        if not dot or re.fullmatch(NAME_PATTERN, name) is None or operation not in OPERATIONS:
            raise ModelNotFound(f"model {protocol_name!r}: protocol models are named <name>.<operation>, the "
                                f"operation one of {', '.join(OPERATIONS)} (e.g. digits.loglik); GET /v2/models/"
                                "<name>.<operation> describes one, GET /models lists the names")
        if version is not None and re.fullmatch(MODEL_VERSION, version) is None:
            raise ModelNotFound(f"model {protocol_name!r}: version {version!r} is not a version; versions are "
                                "the repository's folders 1, 2, ...")
        return cls(protocol_name, name, operation, None if version is None else int(version))

    @property
    def reference(self) -> str:
        """The service's own name for the version: 'name' or 'name:version'."""
        return self.name if self.version is None else f"{self.name}:{self.version}"

    @property
    def spec(self) -> OperationSpec:
        return OPERATIONS[self.operation]


def tensor(name: str, datatype: str, shape: tuple[int, ...]) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape)}


def metadata(model: ProtocolModel, engine: ModelEngine, versions: list[int], has_background: bool) -> dict:
    """GET /v2/models/{m}[/versions/{v}]: the operation's tensors for this version, and its parameters."""
    data, latent = (BATCH, *engine.data_shape), (BATCH, *engine.latent_shape)
    likelihood_parameter = "logits" if engine.likelihood_type == "bernoulli" else "logvar"
    operation = model.operation
    if operation == "encode":
        latents = ["logits"] if engine.categorical else ["mu", "logvar"]
        inputs = [tensor("x", "FP32", data)]
        outputs = [tensor(name, "FP32", latent) for name in latents] + [tensor("z", "FP32", (BATCH, BATCH,
                                                                                            *engine.latent_shape))]
    elif operation == "decode":
        inputs = [tensor("z", "FP32", latent)]
        outputs = ([tensor("x", "FP32", data)] if engine.autoregressive else []) + [
            tensor("mean", "FP32", data), tensor(likelihood_parameter, "FP32", data)]
    elif operation == "sample":
        inputs = []
        outputs = [tensor("z", "FP32", latent), tensor("x", "FP32", data)] + (
            [tensor("mean", "FP32", data), tensor(likelihood_parameter, "FP32", data)] if engine.autoregressive else [])
    elif operation == "loglik":
        inputs = [tensor("x", "FP32", data)]
        outputs = [tensor(name, "FP64", (BATCH,)) for name in ("loglik", "stderr", "elbo")]
    else:
        inputs = [tensor("x", "FP32", data)]
        names = ["score", "p_value", "is_outlier", "loglik", "stderr"] + (["background_loglik"] if has_background else [])
        outputs = [tensor(name, output_datatype(name), (BATCH,)) for name in names] + [
            tensor("feature_scores", "FP32", data)]
    parameters = dict(model.spec.parameters)
    if operation == "decode" and not engine.autoregressive:
        parameters.pop("seed")  # only an autoregressive decoder draws
    return {"name": model.protocol_name, "versions": [str(v) for v in versions], "platform": "vae-onnx/1",
            "inputs": inputs, "outputs": outputs,
            "parameters": {name: {"datatype": datatype, "default": model.spec.params.model_fields[name].default}
                           for name, datatype in parameters.items()}}
