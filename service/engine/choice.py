"""The choice of a version's scorer (engine.scorers), made once, when the version loads.

The kernel tier (engine.kernels.tier) when VAE_KERNEL_TIER allows, the graphs are MLPs and the kernels agree
with the graphs at load; else the ONNX Runtime scorer VAE_LOGLIK_GRAPH asks for: the fused graph, or the two
graphs. Categorical latents get CategoricalScorer; models whose graphs cannot be fused (autoregressive decoders,
or a fused graph that fails to build or to run on its trial batch) get SeparateScorer with the reason in its
description. Why the kernel tier was refused is part of the choice, for the engine to report.
"""

import logging
from dataclasses import dataclass

import numpy as np
import onnx

from modelrepo import Manifest
from modelrepo.contract import CATEGORICAL_LATENT
from modelrepo.likelihood import Likelihood, Prior
from service.engine.fusion import build_scoring_model
from service.engine.options import EngineOptions
from service.engine.scorers import (
    CategoricalScorer,
    FusedScorer,
    Scorer,
    SeparateScorer,
)
from service.engine.sessions import ModelSessions, session_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScorerChoice:
    scorer: Scorer
    kernel_tier_refusal: str | None  # why the kernel tier does not serve the model; None: it does, or it is off


def choose_scorer(manifest: Manifest, encoder: bytes, decoder: bytes, sessions: ModelSessions, prior: Prior,
                  likelihood: Likelihood, options: EngineOptions) -> ScorerChoice:
    if options.kernel_tier == "off":
        return ScorerChoice(_onnx_scorer(manifest, encoder, decoder, sessions, prior, likelihood, options), None)
    from service.engine.kernels.tier import (  # torch and triton past here only
        TierUnavailable,
        build_kernel_scorer,
    )

    reference = SeparateScorer(sessions, prior, likelihood, options.work_elements)  # float32 graphs, float64 math
    try:
        scorer, difference = build_kernel_scorer(manifest, encoder, decoder, sessions, prior, likelihood, options,
                                                 reference)
    except TierUnavailable as refusal:
        log.info("model %s: served by ONNX Runtime, not the kernel tier: %s", manifest.reference, refusal)
        onnx_scorer = _onnx_scorer(manifest, encoder, decoder, sessions, prior, likelihood, options)  # only if needed
        return ScorerChoice(onnx_scorer, str(refusal))
    log.info("model %s: Triton kernels (%s), %.2g nats from the ONNX graphs", manifest.reference, scorer.precision,
             difference)
    return ScorerChoice(scorer, None)


def _onnx_scorer(manifest: Manifest, encoder: bytes, decoder: bytes, sessions: ModelSessions, prior: Prior,
                 likelihood: Likelihood, options: EngineOptions) -> Scorer:
    """The ONNX Runtime scorer the options ask for; the separate one, saying why, when the fused graph cannot serve."""
    if manifest.latent.type == CATEGORICAL_LATENT:
        return CategoricalScorer(sessions, prior, likelihood, options.work_elements, manifest.latent.configurations,
                                 options.enumeration_limit)
    if sessions.autoregressive:
        return SeparateScorer(sessions, prior, likelihood, options.work_elements, "autoregressive decoder, one "
                              "teacher-forced pass per slice; the fused graph serves decoders of z alone")
    if options.loglik_graph == "separate":
        return SeparateScorer(sessions, prior, likelihood, options.work_elements)
    try:
        graph = build_scoring_model(manifest, onnx.load_from_string(encoder), onnx.load_from_string(decoder),
                                    options.precision)
        scorer = FusedScorer(graph.SerializeToString(), session_options(options.threads), options,
                             manifest.latent_dim, manifest.reference)
        scorer.estimate(np.zeros((2, *manifest.data_shape), np.float32), 2, 0)  # fails here, not on a request
    except Exception as exc:  # noqa: BLE001 - FusionError, ModelRunFailed, or ORT's own types
        reason = (str(exc) or type(exc).__name__).splitlines()[0][:200]
        fallback = SeparateScorer(sessions, prior, likelihood, options.work_elements,
                                  f"the fused graph could not be built: {reason}")
        log.warning("model %s: %s", manifest.reference, fallback.description)
        return fallback
    return scorer
