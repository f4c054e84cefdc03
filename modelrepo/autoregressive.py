"""Drawing x from an autoregressive decoder (manifest likelihood.autoregressive): p(x|z) = prod_d p(x_d | z, x_<d)
over the flat positions d of x (C order). The decoder maps (z, x) to the parameters of every p(x_d | z, x_<d) at
once, its output at d reading x only before d; so x is drawn one position at a time, one decoder pass each.

No ONNX Runtime here: the decoder comes in as a plain callable, so the same loop serves the service and the
float64 references of the tests.
"""

import math
from collections.abc import Callable

import numpy as np

from modelrepo.likelihood import Likelihood, Params
from modelrepo.stopping import ShouldStop, stop_if_asked

ConditionalDecode = Callable[[np.ndarray, np.ndarray], Params]  # z (N, *latent), x (N, *data_shape) -> params


def draw_autoregressive(decode: ConditionalDecode, likelihood: Likelihood, z: np.ndarray,
                        data_shape: tuple[int, ...], noise: np.ndarray,
                        should_stop: ShouldStop | None = None) -> tuple[np.ndarray, Params]:
    """x ~ p(x|z) for each of the N latents z, position by position, and the parameters of p(x_d | z, x_<d) at
    the drawn x (from one final pass; equal to those read at each position).

    noise (N, D): the likelihood's randomness for each point and flat position (likelihood.noise), consumed at
    position d as noise[:, d]. Starting from x = 0, pass d runs the decoder on (z, x), reads the parameters at d
    and writes x_d = likelihood.draw(parameters at d, noise[:, d]). should_stop(), when given, is asked before every
    pass; True stops the work (modelrepo.stopping). Returns x (N, *data_shape) float32 and the parameters, each (N, *data_shape).
    """
    n, data_dim = len(z), math.prod(data_shape)
    x = np.zeros((n, data_dim), np.float32)  # (N, D); positions not drawn yet are 0, which no output d reads
    for d in range(data_dim):
        stop_if_asked(should_stop)
        params = decode(z, x.reshape(n, *data_shape))
        at_d = {name: value.reshape(n, data_dim)[:, d] for name, value in params.items()}  # each (N,)
        x[:, d] = likelihood.draw(at_d, noise[:, d])
    stop_if_asked(should_stop)
    drawn = x.reshape(n, *data_shape)
    return drawn, decode(z, drawn)
