"""atlas-jax: batched, jit-compiled scaling-law fitting with intervals."""

import jax

jax.config.update("jax_enable_x64", True)
