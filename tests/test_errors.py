"""The CLI's one error path: every bad input, option, path or environment in the catalogue below ends in exactly
one ``error:`` line that names what is wrong, exit 2, and no output left behind; a bug of ours ends in one line
that points to the traceback's log file, exit 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from atlas_jax.cli import app

GOOD = "params,tokens,loss\n" + "".join(
    f"{n:g},{d:g},{1.7 + 400 / n ** 0.34 + 410 / d ** 0.28:.6f}\n"
    for n in (1e8, 2e8, 4e8, 8e8) for d in (2e9, 4e9, 8e9))

def edited(*cells, **columns) -> str:
    """GOOD as CSV text with ``columns`` added (one value for every row) and ``cells`` (row, column, text) set."""
    frame = pd.read_csv(StringIO(GOOD), dtype=str).assign(**columns)
    for row, column, text in cells:
        frame.loc[row, column] = text
    return frame.to_csv(index=False)


#: name -> (files to write {name: text or bytes}, argv after `atlas-jax`, a regex the error line must match)
CATALOGUE = {
    # Typer's own parse errors
    "misspelt law": ({"t.csv": GOOD}, "fit t.csv --law chinchila --out OUT", r"Invalid value for '--law'.*chinchila"),
    "missing argument": ({}, "fit --law chinchilla --out OUT", r"Missing argument 'runs'.*fit --help"),
    "unknown option": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --bogus 1", "No such option: --bogus"),
    "bootstrap not a number": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --bootstrap abc",
                               "Invalid value for '--bootstrap'"),
    "unknown command": ({}, "fitt t.csv", "No such command 'fitt'"),
    "bad bootstrap unit": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --bootstrap-unit epoch",
                           "Invalid value for '--bootstrap-unit'"),
    # files that cannot be read as a run table
    "file not found": ({}, "fit nope.csv --law chinchilla --out OUT", "run table not found: 'nope.csv'"),
    "folder as table": ({"dir/x": "x"}, "fit dir --law chinchilla --out OUT", "'dir': not a file"),
    "unsupported suffix": ({"t.txt": GOOD}, "fit t.txt --law chinchilla --out OUT", "unsupported file type"),
    "gz that is not gzip": ({"t.csv.gz": GOOD}, "fit t.csv.gz --law chinchilla --out OUT",
                            r"'t.csv.gz': not a readable CSV \(gzip\) file"),
    "parquet that is not parquet": ({"t.parquet": GOOD}, "fit t.parquet --law chinchilla --out OUT",
                                    "'t.parquet': not a readable Parquet file"),
    "not UTF-8": ({"t.csv": b"params,tokens,loss\n1e8,2e9,3.1\x82\n"}, "fit t.csv --law chinchilla --out OUT",
                  r"'t.csv': not UTF-8 text \(byte b'\\x82' at position"),
    "empty file": ({"t.csv": ""}, "fit t.csv --law chinchilla --out OUT", "'t.csv': empty; expected a header row"),
    "header only": ({"t.csv": "params,tokens,loss\n"}, "fit t.csv --law chinchilla --out OUT", "'t.csv': no rows"),
    "semicolons": ({"t.csv": GOOD.replace(",", ";")}, "fit t.csv --law chinchilla --out OUT",
                   "separated by ';'; expected commas"),
    "tabs": ({"t.csv": GOOD.replace(",", "\t")}, "fit t.csv --law chinchilla --out OUT",
             r"separated by '\\t'; expected commas"),
    "ragged rows": ({"t.csv": GOOD + "1e9,2e9,3.1,7,8\n"}, "fit t.csv --law chinchilla --out OUT",
                    "'t.csv': not a readable CSV"),
    # values a table should not hold
    "missing column": ({"t.csv": GOOD.replace("loss", "val_loss")}, "fit t.csv --law chinchilla --out OUT",
                       r"missing required column\(s\) \['loss'\].*--columns params=N"),
    "thousands separators": ({"t.csv": 'params,tokens,loss\n"1,000",2e9,3.1\n' + GOOD.split("\n", 1)[1]},
                             "fit t.csv --law chinchilla --out OUT", r"column 'params': non-numeric .* \['1,000'\]"),
    "percent signs": ({"t.csv": GOOD.replace("\n1e+08,2e+09,", "\n1e+08,2e+09,3.1%", 1)},
                      "fit t.csv --law chinchilla --out OUT", "column 'loss': non-numeric"),
    "excel dates": ({"t.csv": GOOD.replace("\n1e+08,2e+09,", "\n1e+08,2024-01-05,", 1)},
                    "fit t.csv --law chinchilla --out OUT", "column 'tokens': non-numeric .*2024-01-05"),
    "negative params": ({"t.csv": GOOD.replace("\n2e+08,", "\n-2e+08,", 1)}, "fit t.csv --law chinchilla --out OUT",
                        r"column 'params': non-positive value\(s\) at rows \[3\]"),
    "empty loss cell": ({"t.csv": GOOD + "1e+09,2e+09,\n"}, "fit t.csv --law chinchilla --out OUT",
                        r"column 'loss': NaN or infinite value\(s\) at rows \[12\]"),
    "infinite tokens": ({"t.csv": GOOD.replace("\n4e+08,2e+09,", "\n4e+08,inf,", 1)},
                        "fit t.csv --law chinchilla --out OUT", "column 'tokens': NaN or infinite"),
    "several problems at once": ({"t.csv": edited((6, "params", "-4e8"), (11, "loss", "nan"))},
                                 "fit t.csv --law chinchilla --out OUT",
                                 r"2 problems in the run table: (?=.*column 'params': non-positive value\(s\) at "
                                 r"rows \[6\])(?=.*column 'loss': NaN or infinite value\(s\) at rows \[11\])"),
    "missing group label": ({"t.csv": edited((0, "language", ""), language="en")},
                            "fit t.csv --law chinchilla --out OUT --group-by language",
                            r"column 'language': missing group label\(s\) at rows \[0\]"),
    "bootstrap of one": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --bootstrap 1",
                         r"--bootstrap 1: one resample gives no interval; expected 0 \(none\) or at least 2"),
    "bootstrap beyond memory": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --bootstrap 1000000000000",
                                "GiB, more than half of this machine's .* expected at most"),
    "too few runs": ({"t.csv": "\n".join(GOOD.split("\n")[:4]) + "\n"}, "fit t.csv --law chinchilla --out OUT",
                     "no group has the 5 runs"),
    "unique tokens missing": ({"t.csv": GOOD}, "fit t.csv --law data_constrained --out OUT",
                              r"missing required column\(s\) \['unique_tokens'\]"),
    "group column missing": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --group-by language",
                             "group_by column 'language' not found"),
    # options and their values
    "delta zero": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --delta 0",
                   "delta = 0.0: expected a finite number > 0"),
    "delta nan": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --delta nan", "delta = nan"),
    "delta negative": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --delta -1", "delta = -1.0"),
    "fix infinite": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --fix alpha=inf",
                     r"--fix alpha=inf: expected a finite value in \[0, 10\]"),
    "fix outside the domain": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --fix alpha=-0.5",
                               r"--fix alpha=-0.5: expected a finite value"),
    "fix without value": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --fix alpha",
                          "--fix: expected NAME=VALUE, got 'alpha'"),
    "fix not a number": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --fix alpha=abc",
                         "--fix alpha=abc: expected a number"),
    "fix unknown parameter": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --fix gamma=1", "gamma"),
    "negative bootstrap": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --bootstrap -1",
                           "bootstrap = -1: expected an integer >= 0"),
    "tie to itself": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --tie alpha=alpha",
                      "cannot tie 'alpha' to itself"),
    "column mapping to nothing": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --columns params=N",
                                  "source column 'N' not in the table"),
    "one column mapped twice": ({"t.csv": GOOD.replace("params", "N")},
                                "fit t.csv --law chinchilla --out OUT --columns params=N --columns tokens=N",
                                "source column 'N' is mapped to params and tokens"),
    "unknown canonical column": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --columns size=params",
                                 "unknown canonical column 'size'"),
    "bad where": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --where params>>", "not a valid row filter"),
    "where keeps nothing": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --where params<0",
                            "keeps no row of the 12"),
    "variant for another law": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --variant transfer",
                                "--variant applies to --law atlas only"),
    "two-stage for another law": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --two-stage",
                                  "--two-stage applies to --law data_constrained only"),
    "share without groups": ({"t.csv": GOOD}, "fit t.csv --law chinchilla --out OUT --share alpha",
                             "give group_by"),
    # output paths
    "out is a file": ({"t.csv": GOOD, "o.txt": "x"}, "fit t.csv --law chinchilla --out o.txt",
                      "o.txt: exists and is a file; expected an output folder"),
    "out holds the user's files": ({"t.csv": GOOD, "o/notes.txt": "x"}, "fit t.csv --law chinchilla --out o",
                                   "o: holds notes.txt, not written by atlas-jax"),
    "plot out is a folder": ({"dir/x": "x"}, "plot frontier --out dir", "--out dir: expected a .png, .svg or .pdf"),
    "plot out suffix": ({}, "plot frontier --out f.jpg", r"--out f.jpg: expected a .png, .svg or .pdf file"),
    "plot out under a file": ({"f": "x"}, "plot frontier --out f/x.png", "cannot write here|exists and is a file"),
    "predict out not csv": ({}, "predict --fit nofit --params 1e9 --tokens 2e10 --out p.txt",
                            "--out p.txt: expected a .csv file"),
    # other commands
    "posterior file not netcdf": ({"p.nc": "not netcdf"}, "plot posterior-forest p.nc --out f.png",
                                  "p.nc: not a posterior.nc written by `atlas-jax posterior`"),
    "posterior path missing": ({}, "plot posterior-forest p.nc --out f.png", "needs a posterior.nc"),
    "predict without a saved fit": ({}, "predict --fit nofit --params 1e9 --tokens 2e10",
                                    "nofit/fit.json: not found"),
    "predict half a run": ({}, "predict --fit nofit --params 1e9", "--params and --tokens go together"),
    "plan without runs": ({}, "plan --flops 1e21", "plan needs --runs RUNS, or --fit DIR"),
    "plan two budgets": ({"t.csv": GOOD}, "plan --runs t.csv --flops 1e21 --tokens 1e10",
                         "give exactly one budget"),
    "plan negative budget": ({"t.csv": GOOD}, "plan --runs t.csv --flops -1", "flops: expected a positive number"),
    "plan unknown target": ({"t.csv": GOOD}, "plan --runs t.csv --target sw --flops 1e21",
                            "no 'language' column"),
    "hierarchical without groups": ({"t.csv": GOOD}, "posterior t.csv --law chinchilla --out OUT --hierarchical",
                                    "give group_by"),
    "posterior zero draws": ({"t.csv": GOOD}, "posterior t.csv --law chinchilla --out OUT --draws 0",
                             "draws: expected a positive integer"),
    "plot crossover without language": ({}, "plot crossover --out f.png", "plot crossover needs --language"),
    "plot crossover unknown language": ({}, "plot crossover --language xx --out f.png",
                                        "no pretrain/finetune curves for language 'xx'"),
    "frontier exponents": ({}, "plot frontier --exponents 1,2 --out f.png", "expected four numbers"),
    "bench dtype": ({}, "bench epoch --dtype float16 --out OUT", "--dtype: expected one of float64, float32, mixed"),
    "design grid": ({"t.csv": GOOD}, "design --runs t.csv --law chinchilla --target alpha --grid 25 --out OUT",
                    "--grid 25: expected two sizes of at least 2, N x D"),
    "design without law": ({"t.csv": GOOD}, "design --runs t.csv --target alpha --out OUT",
                           "--target alpha: give the --law to fit"),
    "design crossover with law": ({"t.csv": GOOD}, "design --runs t.csv --target crossover_tokens --law chinchilla "
                                  "--language sw --out OUT", "give --language and leave out --law"),
    "design language and group": ({"t.csv": GOOD}, "design --runs t.csv --law chinchilla --target alpha --language "
                                  "sw --group-by run --out OUT", "--language sw designs for the group language = sw"),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_gives_one_error_line_exit_2_and_no_output(name, tmp_path, monkeypatch):
    files, argv, pattern = CATALOGUE[name]
    monkeypatch.chdir(tmp_path)
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(text if isinstance(text, bytes) else text.encode())
    before = set(os.listdir(tmp_path))
    res = CliRunner().invoke(app, argv.replace("OUT", "out").split())
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (res.exit_code, res.output)
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in res.output and set(os.listdir(tmp_path)) == before  # nothing written, nothing hidden


def test_catalogue_covers_sixty_named_cases():
    assert len(CATALOGUE) >= 60


def test_internal_errors_give_one_line_and_a_log_file(tmp_path, monkeypatch):
    """A bug (here a TypeError planted in the fit) ends in one line naming it and the log file that holds the
    full traceback, exit 1."""
    import atlas_jax.data.select as select

    def broken(*args, **kwargs):
        raise TypeError("planted")

    monkeypatch.setattr(select, "select_rows", broken)
    monkeypatch.setenv("ATLAS_JAX_CACHE_DIR", str(tmp_path / "cache" / "xla"))
    (tmp_path / "t.csv").write_text(GOOD)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "t.csv"), "--law", "chinchilla", "--out",
                                   str(tmp_path / "out")])
    (line,) = res.output.strip().splitlines()
    assert res.exit_code == 1 and line.startswith("error: internal error (TypeError: planted); the traceback is in ")
    log = line.split("the traceback is in ")[1].split(";")[0]
    assert log.startswith(str(tmp_path / "cache" / "errors"))
    assert 'raise TypeError("planted")' in Path(log).read_text()
    assert not (tmp_path / "out").exists()


def test_the_installed_command_gives_one_line_for_environment_errors(tmp_path):
    """Through the real entry point (a new process): a bad $ATLAS_JAX_CPU_DEVICES is one error line, exit 2."""
    (tmp_path / "t.csv").write_text(GOOD)
    code = "import sys; from atlas_jax.cli import main; sys.argv = ['atlas-jax'] + sys.argv[1:]; main()"
    out = subprocess.run([sys.executable, "-c", code, "fit", str(tmp_path / "t.csv"), "--law", "chinchilla",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ATLAS_JAX_CPU_DEVICES": "0"})
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: ATLAS_JAX_CPU_DEVICES='0': expected a positive integer (number of CPU devices)"], out.stderr
    assert not (tmp_path / "out").exists()


def test_spreadsheet_exports_are_read(tmp_path):
    """What a spreadsheet's CSV export adds and is not an error: a UTF-8 byte-order mark, empty trailing rows."""
    from atlas_jax.data.runs import read_table

    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b",,\n,,\n")
    frame = read_table(path)
    assert list(frame.columns) == ["params", "tokens", "loss"] and len(frame) == 12
    np.testing.assert_allclose(frame["params"].iloc[:3], [1e8] * 3)
    assert isinstance(frame, pd.DataFrame)


def test_cells_a_table_in_memory_may_hold(tmp_path):
    """In memory a table can hold what no CSV does: True (not a number), a list (not a label or a number); group
    labels read as text keep 01 apart from 1."""
    from atlas_jax.data.runs import read_table, validate_runs

    frame = pd.read_csv(StringIO(GOOD)).astype(object)
    with pytest.raises(ValueError, match=r"column 'params': non-numeric value\(s\) at rows \[0\]: \[True\]"):
        validate_runs(frame.assign(params=[True] + list(frame["params"].iloc[1:])))
    with pytest.raises(ValueError, match=r"column 'case': label\(s\) that are not text or numbers at rows \[0\]"):
        validate_runs(frame.assign(case=[["en"]] + ["en"] * 11), group_by="case")
    with pytest.raises(ValueError, match=r"column 'language': label\(s\) that are not text or numbers at rows \[0\]"):
        validate_runs(frame.assign(language=[["en"]] + ["en"] * 11))
    with pytest.raises(ValueError, match=r"column 'loss': non-numeric value\(s\) at rows \[1\]"):
        validate_runs(frame.assign(loss=[3.1, [3.2]] + list(frame["loss"].iloc[2:])))
    path = tmp_path / "t.csv"
    path.write_text(edited(case=["01"] * 6 + ["1"] * 6))
    assert list(read_table(path, text=("case",))["case"].unique()) == ["01", "1"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("argv", ["fit t.csv --law chinchilla --out ro/out", "plot frontier --out ro/f.png",
                                  "fit t.csv --law chinchilla --out ro"])
def test_read_only_places_are_refused_in_one_line(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text(GOOD)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        res = CliRunner().invoke(app, argv.split())
        assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("error: ") and \
            "cannot write here" in res.output, res.output
        assert os.listdir(tmp_path / "ro") == []
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_a_loss_that_ignores_n_is_no_answer(tmp_path):
    """Losses that do not depend on N (A and alpha unidentified): once a zero-width "interval" with exit 0; now
    flagged, written as diagnostics.csv (no params.csv), exit 3."""
    rows = [(n, d, 1.7 + 410 / d ** 0.28) for n in (1e8, 2e8, 4e8, 8e8) for d in (2e9, 4e9, 8e9)]
    (tmp_path / "t.csv").write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{v:.6f}\n" for n, d, v in rows))
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "t.csv"), "--law", "chinchilla", "--bootstrap", "20",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 3, res.output
    assert re.search(r"group 'all': not a trustworthy fit: .*alpha", res.output), res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".atlas-jax", "diagnostics.csv", "fit.json",
                                                                   "fit.npz", "runs.parquet"]
