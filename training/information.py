"""Mutual information I(x;z) between the data and the latent code, under the encoder (He et al. 2019;
Hoffman & Johnson 2016): I = E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z)) = E_x E_q(z|x)[log q(z|x) - log q(z)],
with x uniform over the given rows and q(z) = (1/N) sum_m q(z|x_m) their aggregate posterior.

Over a finite set of rows q(z) is this mixture exactly; only the draws of z are Monte Carlo. The estimate
is at most log N (a code that tells the N rows apart perfectly).
"""

import math

import torch

from training.likelihoods import LOG_2PI, proposal_log_prob

MI_SAMPLES = 10  # draws of z per row


@torch.no_grad()
def mutual_information(
    mu: torch.Tensor, logvar: torch.Tensor, samples: int = MI_SAMPLES, generator: torch.Generator | None = None,
    block: int = 512,
) -> float:
    """I(x;z) in nats for diagonal Gaussian posteriors mu, logvar (N, L), in float64."""
    mu, logvar = mu.double(), logvar.double()
    n, latent = mu.shape
    eps = torch.randn(n, samples, latent, generator=generator).double().to(mu.device)  # (N, S, L)
    z = (mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(-1, latent)  # (N*S, L)
    log_q_own = proposal_log_prob(eps, logvar[:, None]).reshape(-1)  # (N*S,) log q(z | its own x)
    precision = torch.exp(-logvar)  # (N, L)
    log_q_aggregate = []
    for start in range(0, len(z), block):
        rows = z[start : start + block, None]  # (B, 1, L)
        log_q_each = -0.5 * (LOG_2PI + logvar + (rows - mu).square() * precision).sum(-1)  # (B, N)
        log_q_aggregate.append(torch.logsumexp(log_q_each, dim=1) - math.log(n))  # (B,)
    return float((log_q_own - torch.cat(log_q_aggregate)).mean())
