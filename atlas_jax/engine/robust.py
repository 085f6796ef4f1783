"""Huber's robust loss on log residuals (Huber 1964), as used by Hoffmann et al. 2022.

    rho(r)  = r^2 / 2                 if |r| <= delta
            = delta (|r| - delta / 2)  otherwise
    psi(r)  = rho'(r) = clip(r, -delta, delta)
    rho''(r) = 1{|r| <= delta}
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["huber", "huber_psi"]


def huber(r, delta):
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_psi(r, delta):
    return jnp.clip(r, -delta, delta)
