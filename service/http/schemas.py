"""Request and response bodies of the HTTP API (shared/CONTRACT.md, section 2)."""

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from modelrepo.contract import REFERENCE_PATTERN
from service.types import Method

MAX_SEED = 2**53 - 1  # exact as a JSON number in every client
MAX_TEMPERATURE = 10.0  # far beyond the prior; the digits model draws non-finite x from t = 20 in mode "sample"


def plain_digits(value: Any) -> Any:
    """Query strings: a whole number in plain digits. Pydantic alone would also take '1_0', ' 10', '+10', '10.0'."""
    if isinstance(value, str) and not (value.removeprefix("-").isdigit() and value.isascii()):
        raise PydanticCustomError("int_parsing", "Input should be a valid integer in plain digits (e.g. 10), "
                                  "not {text}", {"text": repr(value[:40])})
    return value


def finite(value: Any) -> Any:
    """NaN and infinity get a message of their own (a range check alone would call NaN 'not >= 0')."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "{what} is not allowed; send a finite number",
                                  {"what": "NaN" if math.isnan(value) else "infinity"})
    return value


# Strict in JSON (an int, never a bool or a string); digits only when it comes from a query string.
WholeNumber = Annotated[int, BeforeValidator(plain_digits)]
# The range inside the type, so that in `Seed | None` it documents the integer (minimum, maximum), not the union.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(plain_digits)]
MODEL_PATTERN = REFERENCE_PATTERN
# Documented here; enforced by the data plane, whose message says what a reference looks like.
ModelField = Field(None, json_schema_extra={"pattern": MODEL_PATTERN}, description="'name' (its highest version) or 'name:version'; "
                   "default: the service's default model.", examples=["digits:1"])
SeedField = Field(None, description="Seed of the random draws; the same seed gives the same "
                  "numbers. Without one the draws are fresh and the result is not cached.")
Batch = Field(..., description="A batch: a list of data points, each nested as the model's data_shape "
              "(or flat, prod(data_shape) numbers).")
# Validated by the data plane against the model's shapes (fast, one NumPy call), so pydantic takes the lists
# as they are; the schema still tells clients what a point is.
Points = Annotated[list[Any], WithJsonSchema({
    "type": "array", "minItems": 1,
    "items": {"anyOf": [{"type": "number"}, {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}}]},
})]
Latents = Annotated[list[Any], WithJsonSchema({
    "type": "array", "minItems": 1,
    "items": {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]}},
})]
METHOD_DESCRIPTION = ("How loglik was computed: importance (k samples of z from q(z|x)), or exact (categorical latents "
                      "with at most VAE_ENUMERATION_LIMIT configurations: the sum over every z, stderr 0).")
K_DESCRIPTION = "Importance samples drawn per point, or (method exact) the number of configurations summed."


class Request(BaseModel):
    """Strict: `"seed": false` or `"k": "5"` is an error, not silently a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


# Each request is its parameters plus its array; with an application/x-npy body the array is the body and the
# parameters travel in the query string.
class EncodeParams(Request):
    model: str | None = ModelField
    samples: WholeNumber = Field(0, ge=0, description="Draws of z ~ q(z|x) per point, returned as z [N][samples][D] "
                                 "(one-hot [N][samples][G][C] for categorical latents).")
    seed: Seed | None = SeedField


class EncodeRequest(EncodeParams):
    x: Points = Batch

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"model": "digits", "x": [[0.1] * 64], "samples": 2, "seed": 7}]})


class DecodeParams(Request):
    model: str | None = ModelField
    seed: Seed | None = Field(None, description="Autoregressive models: seed of the draws of x given z; the same "
                              "seed gives the same x. Without one the draws are fresh and the result is not cached. "
                              "Other models decode without randomness and ignore it.")


class DecodeRequest(DecodeParams):
    z: Latents = Field(..., description="A batch of latent points, [N][latent_dim]; [N][G][C] for categorical "
                       "latents (one-hot, or relaxed values such as Gumbel-softmax samples; flat [N][G*C] too).")

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"model": "digits-binary", "z": [[0.0] * 16]}]})


class SampleRequest(Request):
    model: str | None = ModelField
    n: WholeNumber = Field(1, ge=1, description="How many draws.")
    seed: Seed | None = SeedField
    temperature: Annotated[float, BeforeValidator(finite)] = Field(
        1.0, ge=0, le=MAX_TEMPERATURE, description="Scales the prior's standard deviation (a mixture of Gaussians: "
        "each component's, the component drawn as it is); divides a categorical prior's logits (0: the most likely "
        f"category). Finite, at most {MAX_TEMPERATURE:g} (further out the latents lie where no decoder was trained).")
    mode: Literal["mean", "sample"] = Field("mean", description="mean: E[x given z]; sample: x ~ p(x given z). "
                                            "Autoregressive models take sample only (E[x given z] has no closed form).")

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"model": "digits", "n": 2, "seed": 0, "temperature": 1.0, "mode": "mean"}]})


class LoglikParams(Request):
    model: str | None = ModelField
    k: WholeNumber = Field(1000, ge=1, description="Importance samples per data point (not used when the model's "
                           "log p(x) is summed exactly: see method).")
    seed: WholeNumber = Field(0, ge=0, le=MAX_SEED, description="Seed of the importance samples.")


class LoglikRequest(LoglikParams):
    x: Points = Batch

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"model": "digits-binary", "x": [[0, 1] * 32], "k": 1000, "seed": 0}]})


FprField = Field(None, gt=0, lt=1, description="The false-positive rate: a point is an outlier when its p-value is "
                 "at most this. In (0, 1) and at least 1 / (n + 1) for a reference of n points; default: the "
                 "service's VAE_DEFAULT_FPR (0.01).", examples=[0.01])


class ScoreParams(Request):
    model: str | None = ModelField
    fpr: Annotated[float, BeforeValidator(finite)] | None = FprField
    features: bool = Field(False, description="Also the per-feature scores: E over p(z given x) of -log p(x_d given "
                           "z), in nats, [N, *data_shape]: which parts of each point the model cannot explain.")


class ScoreRequest(ScoreParams):
    x: Points = Batch

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"model": "digits-binary", "x": [[0, 1] * 32], "fpr": 0.01, "features": False}]})


class ReferenceSummary(BaseModel):
    n: int = Field(..., description="Reference points.")
    score: Literal["loglik", "likelihood_ratio"]
    k: int = Field(..., description="Importance samples of every estimate of log p(x), as /loglik's k.")
    seed: int = Field(..., description="Their seed, as /loglik's seed.")
    data: str = Field(..., description="What the reference points were.")
    background: str | None = Field(..., description="The background model of a likelihood ratio, 'name:version'.")


SCORE_DESCRIPTION = ("The score: log p(x) for a loglik reference, log p(x) - log p_background(x) for a likelihood "
                     "ratio. Low scores are unusual.")
P_VALUE_DESCRIPTION = "(1 + #{reference scores <= score}) / (n + 1): the conformal lower-tail p-value."


class ScoreResponse(BaseModel):
    model: str
    reference: ReferenceSummary
    fpr: float
    threshold: float = Field(..., description="s_(m), the m-th smallest reference score, m = floor(fpr (n + 1)): a "
                             "point is an outlier exactly when its score is below it.")
    score: list[float] = Field(..., description=SCORE_DESCRIPTION + " [N].")
    p_value: list[float] = Field(..., description=P_VALUE_DESCRIPTION + " [N].")
    is_outlier: list[bool] = Field(..., description="p_value <= fpr: [N].")
    loglik: list[float] = Field(..., description="The model's log p(x), as /loglik answers with the reference's k "
                                "and seed: [N].")
    stderr: list[float] = Field(..., description="Its standard error: [N].")
    method: Method = Field(..., description=METHOD_DESCRIPTION)
    background_loglik: list[float] | None = Field(None, description="Likelihood ratios: the background's log p(x), "
                                                  "[N].")
    feature_scores: list[Any] | None = Field(None, description="With features: E over p(z given x) of -log p(x_d "
                                             "given z) in nats, [N, *data_shape]; per point they sum to E of -log "
                                             "p(x given z).")


class ScorePointResponse(BaseModel):
    model: str
    reference: ReferenceSummary
    fpr: float
    threshold: float
    score: float
    p_value: float
    is_outlier: bool
    loglik: float
    stderr: float
    method: Method = Field(..., description=METHOD_DESCRIPTION)
    background_loglik: float | None = None
    feature_scores: list[Any] | None = Field(None, description="With features: [*data_shape].")


MAX_STEPS = 256


class InterpolateRequest(Request):
    model: str | None = ModelField
    x: Points | None = Field(None, description="The two ends as data points: the path runs between their encoder "
                             "means. Send x or z.")
    z: Latents | None = Field(None, description="The two ends as latent points, [2][latent_dim]. Send x or z.")
    steps: WholeNumber = Field(8, ge=2, le=MAX_STEPS, description="Points on the path, both ends included.")
    path: Literal["linear", "spherical"] = Field("linear", description="linear: (1 - t) z_a + t z_b; spherical: "
                                                 "slerp, sin((1 - t) theta) / sin theta z_a + sin(t theta) / sin "
                                                 "theta z_b (linear when theta is 0 or pi).")
    seed: Seed | None = Field(None, description="Autoregressive models: the seed of /decode's draws of x given z.")

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"model": "digits", "z": [[0.0] * 8, [1.0] * 8], "steps": 8, "path": "spherical"}]})


class InterpolateResponse(BaseModel):
    model: str
    z: list[list[float]] = Field(..., description="[steps][latent_dim], from one end to the other.")
    x: list[Any] = Field(..., description="What /decode answers for z (its mean), [steps, *data_shape].")


class EncodeResponse(BaseModel):
    model: str = Field(..., examples=["digits:1"])
    mu: list[list[float]] | None = Field(None, description="[N][latent_dim] (Gaussian latents).")
    logvar: list[list[float]] | None = Field(None, description="[N][latent_dim] (Gaussian latents).")
    logits: list[list[list[float]]] | None = Field(None, description="Categorical latents: the encoder's logits of "
                                                   "q(z|x), [N][G][C], in place of mu and logvar.")
    z: list[list[Any]] | None = Field(None, description="[N][samples][latent_dim], when samples > 0; one-hot "
                                      "[N][samples][G][C] for categorical latents.")


AR_PARAMETERS = " Autoregressive models: of p(x_d given z, x_<d) at the drawn x."


class DecodeResponse(BaseModel):
    model: str
    x: list[Any] | None = Field(None, description="Autoregressive models: x drawn from p(x given z), position by "
                                "position, [N, *data_shape].")
    mean: list[Any] = Field(..., description="E[x given z], [N, *data_shape]." + AR_PARAMETERS)
    logits: list[Any] | None = Field(None, description="Bernoulli models: [N, *data_shape]." + AR_PARAMETERS)
    logvar: list[Any] | None = Field(None, description="Gaussian models: [N, *data_shape]." + AR_PARAMETERS)


class SampleResponse(BaseModel):
    model: str
    z: list[Any] = Field(..., description="[n][latent_dim]; one-hot [n][G][C] for categorical latents.")
    x: list[Any] = Field(..., description="[n, *data_shape]")
    mean: list[Any] | None = Field(None, description="Autoregressive models only: the mean of p(x_d given z, x_<d) "
                                   "at the drawn x, [n, *data_shape].")
    logits: list[Any] | None = Field(None, description="Autoregressive Bernoulli models only: [n, *data_shape]." +
                                     AR_PARAMETERS)
    logvar: list[Any] | None = Field(None, description="Autoregressive Gaussian models only: [n, *data_shape]." +
                                     AR_PARAMETERS)


class LoglikResponse(BaseModel):
    model: str
    method: Method = Field(..., description=METHOD_DESCRIPTION)
    k: int = Field(..., description=K_DESCRIPTION)
    loglik: list[float] = Field(..., description="log p(x) in nats: [N].")
    stderr: list[float] = Field(..., description="Delta-method standard error of loglik (0 when exact): [N].")
    elbo: list[float] = Field(..., description="Mean of the k log-weights, or (exact) sum_z q(z|x) log(p(x, z) / "
                              "q(z|x)): [N].")


class LoglikPointResponse(BaseModel):
    model: str
    method: Method = Field(..., description=METHOD_DESCRIPTION)
    k: int = Field(..., description=K_DESCRIPTION)
    loglik: float
    stderr: float
    elbo: float


class ErrorResponse(BaseModel):
    detail: str = Field(..., examples=["k: 20000 is over the limit of 10000 (VAE_MAX_K)"])
