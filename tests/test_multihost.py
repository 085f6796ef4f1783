"""Two processes on localhost joined by jax.distributed fit one batch over both processes' devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

import atlas_jax as aj

WORKER = """
import json, sys, jax
import atlas_jax as aj
pid, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid, initialization_timeout=60,
                           heartbeat_timeout_seconds=20)
res = aj.fit("chinchilla", aj.load_chinchilla(), bootstrap=50, seed=4)
print(json.dumps({"devices": jax.device_count(), "local": jax.local_device_count(),
                  "estimate": res.estimate.tolist(), "samples": res.samples.tolist()}))
jax.distributed.shutdown()
"""


def test_two_processes_fit_one_batch_like_one_process():
    """Each process has one CPU device; fit() splits the grid and the bootstrap over the 2 global devices and
    both processes get every result, equal to a single-process fit (to 1e-8; the bootstrap refits to 1e-6)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "ATLAS_JAX_CPU_DEVICES": "1",
           "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(pid), port], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    one = aj.fit("chinchilla", aj.load_chinchilla(), bootstrap=50, seed=4, devices=1)
    for r in results:
        assert (r["devices"], r["local"]) == (2, 1)
        np.testing.assert_allclose(r["estimate"], one.estimate, rtol=1e-8)
        np.testing.assert_allclose(r["samples"], one.samples, rtol=1e-6)
