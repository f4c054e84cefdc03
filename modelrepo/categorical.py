"""log p(x) for categorical latents (z: G independent one-hot vectors of C categories), in NumPy on the host:

    proposal  q(z|x) = prod_g Cat(z_g; softmax(logits_g(x)))       logits [N, G, C] from the encoder
    exact     log p(x) = log sum_z p(x|z) p(z) over all C^G configurations; elbo = sum_z q(z|x) log(p(x, z) / q(z|x))
    sampled   the contract's importance estimate with z ~ q(z|x)  (modelrepo.importance)

Draws of z come from uniforms u (K, G), the same for every point: category = the first c with
cdf_g(c) > u_g, the inverse of q's cumulative distribution, so a point's draws, like eps for Gaussian latents,
do not depend on the batch it came in. Both estimates keep at most ~work_elements values alive at once.
"""

import math
from collections.abc import Callable

import numpy as np

from modelrepo.importance import ImportanceEstimate
from modelrepo.likelihood import (
    Categorical,
    Likelihood,
    Params,
    estimate_in_slices,
    generator,
    log_softmax,
    log_sum_exp,
    one_hot,
    slicing,
)
from modelrepo.stopping import ShouldStop, stop_if_asked

Encode = Callable[[np.ndarray], tuple[np.ndarray]]  # x (n, *data_shape) f32 -> (logits (n, G, C),)
Decode = Callable[[np.ndarray], Params]  # z (m, G, C) f32 -> params, each (m, *data_shape)


def category_noise(seed: int | None, count: int, groups: int) -> np.ndarray:
    """u (count, G) uniform on [0, 1); a prefix of a longer draw with the same seed. None: fresh draws."""
    return generator(seed).random((count, groups))


def draw_categories(log_q: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """log_q (N, G, C) log-probabilities, uniforms (S, G) -> category indices (N, S, G): the first c whose
    cumulative probability exceeds u, so category c comes with probability q_c (and never when q_c = 0)."""
    cdf = np.cumsum(np.exp(log_q), axis=-1)  # (N, G, C)
    below = (cdf[:, None] <= uniforms[None, :, :, None]).sum(-1)  # (N, S, G)
    return np.minimum(below, log_q.shape[-1] - 1)  # a u above a total rounded below 1: the last category


def configurations(start: int, stop: int, groups: int, categories: int) -> np.ndarray:
    """Configurations start..stop-1 of the C^G, as category indices (stop - start, G): the digits of the
    configuration's number in base C, the first group's the most significant."""
    powers = categories ** np.arange(groups - 1, -1, -1, dtype=np.int64)  # (G,)
    return (np.arange(start, stop, dtype=np.int64)[:, None] // powers) % categories


def _log_q_of(log_q: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """log_q (b, G, C), categories (b, c, G) or (c, G) -> log q(z|x) (b, c), summed over the groups."""
    groups = np.arange(log_q.shape[1])
    if categories.ndim == 2:  # the same configurations for every point
        return log_q[:, groups, categories].sum(-1)  # (b, c, G) -> (b, c)
    rows = np.arange(len(log_q))[:, None, None]
    return log_q[rows, groups, categories].sum(-1)


def enumerated_loglik(encode: Encode, decode: Decode, likelihood: Likelihood, prior: Categorical, x: np.ndarray,
                      work_elements: int, should_stop: ShouldStop | None = None) -> ImportanceEstimate:
    """log p(x) = log sum_z p(x|z) p(z) exactly, over every configuration; stderr 0; elbo the exact
    sum_z q(z|x) log(p(x, z) / q(z|x)). Each slice of configurations is decoded once for all the points."""
    n, data_dim = len(x), math.prod(x.shape[1:])
    groups, categories = prior.groups, prior.categories
    terms = categories**groups
    (logits,) = encode(x)
    log_q = log_softmax(logits)  # (N, G, C)
    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)
    block, chunk = slicing(n, terms, data_dim, groups * categories, work_elements)
    log_total, elbo = np.full(n, -np.inf), np.zeros(n)
    for start in range(0, terms, chunk):
        stop_if_asked(should_stop)
        index = configurations(start, min(start + chunk, terms), groups, categories)  # (c, G)
        z = one_hot(index, categories)  # (c, G, C)
        params = {name: value.reshape(1, len(z), data_dim) for name, value in decode(z).items()}  # each (1, c, D)
        log_prior = prior.log_density(z)  # (c,)
        for first in range(0, n, block):
            rows = slice(first, min(first + block, n))
            log_joint = likelihood.log_density(flat_x[rows], params) + log_prior  # (b, c)
            log_q_z = _log_q_of(log_q[rows], index)  # (b, c)
            log_total[rows] = np.logaddexp(log_total[rows], log_sum_exp(log_joint, axis=1))
            with np.errstate(invalid="ignore"):  # q = 0 where p(x, z) = 0: the term is 0
                terms_elbo = np.where(log_q_z > -np.inf, np.exp(log_q_z) * (log_joint - log_q_z), 0.0)
            elbo[rows] += terms_elbo.sum(1)
    return ImportanceEstimate(loglik=log_total, stderr=np.zeros(n), elbo=elbo)


def categorical_importance_loglik(encode: Encode, decode: Decode, likelihood: Likelihood, prior: Categorical,
                                  x: np.ndarray, uniforms: np.ndarray, work_elements: int,
                                  should_stop: ShouldStop | None = None) -> ImportanceEstimate:
    """The contract's importance estimate with z ~ q(z|x) drawn from uniforms (K, G), the same for every point:
    log w = log p(x|z) + log p(z) - log q(z|x)."""
    n, data_dim = len(x), math.prod(x.shape[1:])
    k, groups = uniforms.shape
    terms = categorical_slice_terms(encode, decode, prior, x, uniforms)
    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)

    def log_weights(rows: slice, samples: slice) -> np.ndarray:  # (b, c)
        params, log_prior, log_q_z = terms(rows, samples)
        return likelihood.log_density(flat_x[rows], params) + log_prior - log_q_z

    block_and_chunk = slicing(n, k, data_dim, groups * prior.categories, work_elements)
    return estimate_in_slices(n, k, block_and_chunk, log_weights, should_stop)


def categorical_slice_terms(encode: Encode, decode: Decode, prior: Categorical, x: np.ndarray,
                            uniforms: np.ndarray) -> Callable[[slice, slice], tuple[Params, np.ndarray, np.ndarray]]:
    """The encoder run once over x; then terms(rows, samples) -> (the decoder's params at the draws of z ~ q(z|x)
    from those uniforms, each (b, c, D); log p(z) (b, c); log q(z|x) (b, c))."""
    data_dim = math.prod(x.shape[1:])
    groups, categories = prior.groups, prior.categories
    (logits,) = encode(x)
    log_q = log_softmax(logits)  # (N, G, C)

    def terms(rows: slice, samples: slice) -> tuple[Params, np.ndarray, np.ndarray]:
        index = draw_categories(log_q[rows], uniforms[samples])  # (b, c, G)
        b, c = index.shape[:2]
        z = one_hot(index, categories)  # (b, c, G, C)
        params = decode(z.reshape(b * c, groups, categories))
        params = {name: value.reshape(b, c, data_dim) for name, value in params.items()}  # each (b, c, D)
        return params, prior.log_density(z), _log_q_of(log_q[rows], index)

    return terms
