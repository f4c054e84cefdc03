import numpy as np
import pytest
import torch

from training.config import ModelConfig
from training.model import VAE


def inverse_softplus(y: float) -> float:
    return float(np.log(np.expm1(y)))


def linear_gaussian_vae(weight: np.ndarray, bias: np.ndarray, noise_var: float) -> VAE:
    """A float64 VAE whose decoder is x = W z + b + N(0, noise_var I) and whose encoder is the exact posterior.

    W (D, L) must have orthogonal columns, so that the exact posterior has a diagonal covariance:
        Sigma = diag(1 / (1 + s / noise_var)), s = diag(W^T W);  mu = Sigma W^T (x - b) / noise_var.
    """
    data_dim, latent = weight.shape
    config = ModelConfig(data_shape=(data_dim,), latent_dim=latent, hidden=(), likelihood="gaussian")
    vae = VAE(config).double()
    gram = weight.T @ weight
    assert np.allclose(gram, np.diag(np.diag(gram))), "columns of W must be orthogonal"
    posterior_var = 1.0 / (1.0 + np.diag(gram) / noise_var)  # (L,)
    encoder_matrix = (posterior_var[:, None] * weight.T) / noise_var  # (L, D)
    raw_logvar = config.min_logvar + inverse_softplus(np.log(noise_var) - config.min_logvar)
    with torch.no_grad():
        enc, dec = vae.encoder[0], vae.decoder[0]
        enc.weight.zero_(), enc.bias.zero_(), dec.weight.zero_(), dec.bias.zero_()
        enc.weight[:latent] = torch.from_numpy(encoder_matrix)
        enc.bias[:latent] = torch.from_numpy(-encoder_matrix @ bias)
        enc.bias[latent:] = torch.from_numpy(np.log(posterior_var))
        dec.weight[:data_dim] = torch.from_numpy(weight)
        dec.bias[:data_dim] = torch.from_numpy(bias)
        dec.bias[data_dim:] = raw_logvar
    return vae.eval()


@pytest.fixture
def linear_gaussian():
    """(vae, W, b, noise_var) for D = 5, L = 3."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.standard_normal((5, 3)))
    weight = q * np.array([2.0, 1.0, 0.5])  # orthogonal columns of different lengths
    bias = rng.standard_normal(5)
    noise_var = 0.3
    return linear_gaussian_vae(weight, bias, noise_var), weight, bias, noise_var


@pytest.fixture
def tiny_vae():
    torch.manual_seed(0)
    return VAE(ModelConfig(data_shape=(1, 4, 4), latent_dim=3, hidden=(16,), likelihood="bernoulli"))
