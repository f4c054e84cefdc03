"""Latent paths between two points (CONTRACT section 4), in float64.

    t_i = i / (steps - 1),  i = 0 .. steps - 1
    linear     z_t = (1 - t) z_a + t z_b
    spherical  z_t = sin((1 - t) theta) / sin theta * z_a + sin(t theta) / sin theta * z_b,
               cos theta = z_a . z_b / (|z_a| |z_b|);  linear when theta is 0 or pi (or an end is 0)
"""

import numpy as np

LINEAR, SPHERICAL = "linear", "spherical"
PATHS = (LINEAR, SPHERICAL)


def latent_path(z_a: np.ndarray, z_b: np.ndarray, steps: int, path: str) -> np.ndarray:
    """z_a, z_b (L,) -> (steps, L) float64 from z_a to z_b, both ends included."""
    z_a, z_b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]  # (steps, 1)
    if path == SPHERICAL:
        norms = np.linalg.norm(z_a) * np.linalg.norm(z_b)
        if norms > 0:
            theta = np.arccos(np.clip(z_a @ z_b / norms, -1.0, 1.0))
            if np.sin(theta) > 1e-12:
                return (np.sin((1 - t) * theta) * z_a + np.sin(t * theta) * z_b) / np.sin(theta)
    elif path != LINEAR:
        raise ValueError(f"path: {path!r} is not one of {PATHS}")
    return (1 - t) * z_a + t * z_b
