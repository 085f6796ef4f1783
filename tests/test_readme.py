"""Docs that run: every Python block of the README, in order, in one namespace, with fewer resamples and
draws (the README says where its full settings take minutes); blocks marked as not run say why."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- not run by tests/test_readme.py: [^>]+ -->\n)?```python\n(.*?)```", re.S)
#: the README's settings and the smaller ones run here (each must occur in the README)
SMALL = {
    "bootstrap=4000, bootstrap_multistart=True": "bootstrap=2, bootstrap_multistart=True",
    "bootstrap=4000": "bootstrap=20",
    "bootstrap=500": "bootstrap=10",
    "bootstrap=200": "bootstrap=10",
    "chains=4, draws=1000, warmup=1000": "chains=2, draws=50, warmup=50",
    "aj.compare_laws(pretrain)": "aj.compare_laws(pretrain, laws=['chinchilla', 'atlas'], protocols=['random'])",
    "chains=4,\n                                            draws=1000, warmup=1000":
        "chains=2,\n                                            draws=50, warmup=50",
}


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    text = README.read_text()
    assert [big for big in SMALL if big not in text] == []
    blocks = BLOCK.findall(text)
    assert len(blocks) >= 5 and sum(1 for skip, _ in blocks if skip) == 1
    monkeypatch.chdir(tmp_path)  # files the README writes (out/chinchilla) land here
    namespace: dict = {}
    for skip, code in blocks:
        if skip:
            continue
        for big, small in SMALL.items():
            code = code.replace(big, small)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flags of the small settings: the README shows calls, not verdicts
            exec(compile(code, str(README), "exec"), namespace)
    assert (tmp_path / "out" / "chinchilla" / "fit.json").exists()
    assert namespace["post"].public.shape[:2] == (2, 50)
    plt.close("all")
