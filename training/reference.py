"""A version's reference.json (CONTRACT section 3): the scores of the calibration split, computed on the version's
own ONNX graphs with modelrepo's estimators, as the service's /loglik computes them with the reference's k and seed.

    loglik reference   s(x) = log p_model(x)
    ratio reference    s(x) = log p_model(x) - log p_background(x)   (Ren et al. 2019; `background` names the model)

The points are training.data.calibration_split of the model's test rows: neither training nor checkpoint selection
sees them. The estimate is the service's choice of estimator (service/engine/choice.py, which training may not
import): the exact sum for categorical latents with at most ENUMERATION_LIMIT configurations, else importance
sampling with the seed's noise; autoregressive decoders teacher-forced. The service's fused float32 graph gives the
same numbers up to its float32 rounding (tests/test_reference.py checks them against the service's engine).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tqdm.auto import tqdm

from modelrepo import Manifest
from modelrepo.categorical import categorical_importance_loglik, category_noise, enumerated_loglik
from modelrepo.contract import (
    CATEGORICAL_LATENT,
    DECODER_CONDITION,
    DECODER_INPUT,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    LIKELIHOOD_RATIO,
    LOGLIK_SCORE,
)
from modelrepo.importance import ImportanceEstimate
from modelrepo.likelihood import Params, importance_sampled_loglik, latent_noise, likelihood_for, prior_for
from modelrepo.manifest import encoder_outputs
from modelrepo.reference import write_reference
from training.config import DataConfig
from training.data import calibration_split, load_dataset

REFERENCE_K, REFERENCE_SEED = 1000, 0  # the contract's example and what the shipped references use
ENUMERATION_LIMIT = 4096  # the service's default VAE_ENUMERATION_LIMIT: exact sums up to this many configurations
WORK_ELEMENTS = 1 << 22  # the service's default VAE_WORK_ELEMENTS; it bounds memory, the numbers do not depend on it
POINTS_PER_STEP = 25  # points per step of the progress bar; a point's estimate does not depend on its batch


@dataclass(frozen=True)
class CalibrationPoints:
    """The points a reference scores and what its "data" text says of them."""

    x: np.ndarray  # (n, *data_shape) float32
    data: str


def calibration_points(data: DataConfig, likelihood: str) -> CalibrationPoints:
    """The calibration split of the data set's test rows (training.data.calibration_split)."""
    dataset = load_dataset(data, likelihood)
    chosen, _, _ = calibration_split(dataset.test)
    text = (f"{dataset.name}: calibration split, {len(chosen)} of the {len(dataset.test)} test rows "
            "(training.data.calibration_split), held out from training and checkpoint selection")
    return CalibrationPoints(np.ascontiguousarray(chosen, dtype=np.float32), text)


class OnnxGraphs:
    """A version's encoder and decoder in ONNX Runtime on the CPU, called as modelrepo's estimators call them."""

    def __init__(self, manifest: Manifest, folder: Path):
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = torch.get_num_threads()  # as many as torch takes (OMP_NUM_THREADS)
        settings.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(Path(folder) / manifest.encoder), settings, providers=providers)
        self.decoder = ort.InferenceSession(str(Path(folder) / manifest.decoder), settings, providers=providers)
        self.encoder_outputs = list(encoder_outputs(manifest))
        self.decoder_outputs = list(DECODER_OUTPUTS[manifest.likelihood.type])
        self.autoregressive = manifest.likelihood.autoregressive

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """x (n, *data_shape) -> mu, logvar (n, L); or (logits (n, G, C),)."""
        return tuple(self.encoder.run(self.encoder_outputs, {ENCODER_INPUT: x}))

    def decode(self, z: np.ndarray, x: np.ndarray | None = None) -> Params:
        """z (m, *latent_shape) (and x (m, *data_shape) when autoregressive) -> the likelihood's parameters."""
        feeds = {DECODER_INPUT: z, **({DECODER_CONDITION: x} if self.autoregressive else {})}
        return dict(zip(self.decoder_outputs, self.decoder.run(self.decoder_outputs, feeds)))


def version_loglik(manifest: Manifest, folder: Path, x: np.ndarray, k: int = REFERENCE_K, seed: int = REFERENCE_SEED,
                   progress: bool = True) -> np.ndarray:
    """log p(x) (n,) float64 of the version in `folder` (described by `manifest`), as /loglik gives it for k, seed."""
    graphs = OnnxGraphs(manifest, folder)
    likelihood, prior = likelihood_for(manifest.likelihood.type), prior_for(manifest.prior, manifest.latent_shape)
    x = np.ascontiguousarray(x, dtype=np.float32)

    def estimate(rows: np.ndarray) -> ImportanceEstimate:
        if manifest.latent.type == CATEGORICAL_LATENT:
            parts = (graphs.encode, graphs.decode, likelihood, prior, rows)
            if manifest.latent.configurations <= ENUMERATION_LIMIT:
                return enumerated_loglik(*parts, WORK_ELEMENTS)
            return categorical_importance_loglik(*parts, category_noise(seed, k, prior.groups), WORK_ELEMENTS)
        return importance_sampled_loglik(graphs.encode, graphs.decode, likelihood, prior, rows,
                                         latent_noise(seed, k, manifest.latent_dim), WORK_ELEMENTS,
                                         autoregressive=graphs.autoregressive)

    steps = range(0, len(x), POINTS_PER_STEP)
    bar = tqdm(total=len(x), desc=f"reference {manifest.reference}, k={k}", unit="point",
               disable=not progress or math.ceil(len(x) / POINTS_PER_STEP) < 2)
    parts = []
    for start in steps:
        parts.append(estimate(x[start : start + POINTS_PER_STEP]).loglik)
        bar.update(len(parts[-1]))
    bar.close()
    return np.concatenate(parts)


def write_loglik_reference(manifest: Manifest, folder: Path, points: CalibrationPoints, k: int = REFERENCE_K,
                           seed: int = REFERENCE_SEED, progress: bool = True) -> Path:
    """Score the points on the graphs in `folder` and write its reference.json (score "loglik")."""
    scores = version_loglik(manifest, folder, points.x, k, seed, progress)
    return write_reference(folder, LOGLIK_SCORE, k, seed, scores, points.data)


def write_ratio_reference(manifest: Manifest, folder: Path, background: Manifest, background_folder: Path,
                          points: CalibrationPoints, k: int = REFERENCE_K, seed: int = REFERENCE_SEED,
                          progress: bool = True) -> Path:
    """Score the points by log p_model - log p_background, each as /loglik gives it for k, seed, and write the
    version's reference.json (score "likelihood_ratio", background "name:version")."""
    if list(background.data_shape) != list(manifest.data_shape):
        raise ValueError(f"background {background.reference} has data_shape {background.data_shape}, the model "
                         f"{manifest.data_shape}; a likelihood ratio needs the same")
    model = version_loglik(manifest, folder, points.x, k, seed, progress)
    subtracted = version_loglik(background, background_folder, points.x, k, seed, progress)
    data = f"{points.data}; the background {background.reference} was trained on the same training rows"
    return write_reference(folder, LIKELIHOOD_RATIO, k, seed, model - subtracted, data, background.reference)
