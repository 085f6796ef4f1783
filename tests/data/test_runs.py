"""Tests for atlas_jax.data.runs: the run-table schema, loaders and validation."""

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atlas_jax.data import (
    CANONICAL_COLUMNS,
    DESIGN_COLUMNS,
    LANGUAGE_CODE,
    NUMERIC_COLUMNS,
    POSITIVE_COLUMNS,
    RunTable,
    load_runs,
    mixture_columns,
    mixture_languages,
    parse_column_mapping,
    validate_runs,
)

DATA = Path(__file__).parents[2] / "atlas_jax" / "datasets"


def runs(n=6, **columns):
    """A valid run table of n runs with distinct params and tokens, plus extra columns."""
    frame = pd.DataFrame({
        "params": np.geomspace(1e7, 1e9, n),
        "tokens": np.geomspace(1e9, 1e11, n)[::-1],
        "loss": np.linspace(3.5, 2.5, n),
    })
    return frame.assign(**columns)


def mixture(n=4):
    """Two-language mixture runs whose tokens_en + tokens_de add up to tokens."""
    frame = runs(n)
    return frame.assign(tokens_en=0.75 * frame["tokens"], tokens_de=0.25 * frame["tokens"],
                        unique_en=0.5 * frame["tokens"], unique_de=0.1 * frame["tokens"])


def with_value(frame, column, row, value):
    frame = frame.astype({column: object}) if isinstance(value, str) else frame.copy()
    frame.loc[row, column] = value
    return frame


def raises(frame, column, rows, *args, **kwargs):
    """Validates, expecting a ValueError whose message names the column and the rows."""
    with pytest.raises(ValueError) as info:
        validate_runs(frame, *args, **kwargs)
    message = str(info.value)
    assert repr(column) in message, message
    assert str(rows) in message, message
    return message


def test_public_constants():
    assert CANONICAL_COLUMNS == (
        "params", "tokens", "loss", "unique_tokens", "language", "group", "num_languages", "regime", "step", "run")
    assert set(POSITIVE_COLUMNS) <= set(NUMERIC_COLUMNS) <= set(CANONICAL_COLUMNS)
    assert set(DESIGN_COLUMNS) - set(CANONICAL_COLUMNS) == {"seed"} and "loss" not in DESIGN_COLUMNS


def test_valid_table_is_canonical_float64_copy():
    raw = runs(4, N=[1, 2, 3, 4], step=[0, 10, 20, 30], regime=["pretrain"] * 4, note=list("abcd"))
    raw = raw.drop(columns="params").set_axis([10, 5, 7, 3])
    before = raw.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = validate_runs(raw, {"params": "N"})
    pd.testing.assert_frame_equal(raw, before)  # input untouched
    frame = table.frame
    assert list(frame.index) == [0, 1, 2, 3]
    assert list(frame.columns) == ["tokens", "loss", "params", "step", "regime", "note"]
    assert all(frame[c].dtype == np.float64 for c in ("params", "tokens", "loss", "step"))
    np.testing.assert_array_equal(frame["params"], [1.0, 2.0, 3.0, 4.0])
    assert list(frame["note"]) == list("abcd")
    assert table.warnings == () and table.languages == ()


def test_numeric_strings_are_converted():
    frame = runs(3).astype({"tokens": str})
    assert validate_runs(frame).frame["tokens"].dtype == np.float64


def test_languages_property():
    assert validate_runs(mixture()).languages == ("de", "en")


def test_run_ids_are_text():
    frame = runs(4, run=[1, 1, 2, 10], step=[10.0, 20.0, 10.0, 10.0])
    table = validate_runs(frame)
    assert table.frame["run"].tolist() == ["1", "1", "2", "10"]
    assert all(isinstance(v, str) for v in table.frame["run"])
    assert validate_runs(runs(2, run=["01", "1"])).frame["run"].tolist() == ["01", "1"]


def test_missing_run_ids():
    message = raises(runs(5, run=["a", None, "b", np.nan, "c"]), "run", [1, 3])
    assert "missing run id(s)" in message


def test_run_ids_read_from_csv_keep_leading_zeros(tmp_path):
    path = tmp_path / "runs.csv"
    runs(3, run_id=["007", "7", "0070"]).to_csv(path, index=False)
    table = load_runs(path, {"run": "run_id"})
    assert table.frame["run"].tolist() == ["007", "7", "0070"]


def test_language_code():
    for code in ["en", "ckb", "fil", "zh_Hans", "zh_hans", "ace_Arab", "ace_arab"]:
        assert LANGUAGE_CODE.fullmatch(code), code
    for word in ["train_tokens", "english", "e", "EN", "en_us", "zh_Hans_CN", "seen", "en-GB", "1b"]:
        assert not LANGUAGE_CODE.fullmatch(word), word


def test_unique_train_tokens_is_an_ordinary_column():
    frame = mixture().assign(unique_train_tokens=["a", "b", "c", "d"], tokens_seen=1.0)
    table = warned(frame)
    assert table.warnings == (
        "column(s) ['unique_train_tokens', 'tokens_seen'] are not mixture columns (their suffix is not a language "
        "of the table, or the mixture adds up to 'tokens' without them): kept as ordinary columns",)
    assert table.languages == ("de", "en") and list(table.frame["unique_train_tokens"]) == list("abcd")
    assert mixture_columns(table.frame, "unique") == ["unique_en", "unique_de"]


def test_helper_languages_never_evaluated_are_mixture_columns():
    """tokens_es and tokens_ace_Arab are mixture columns though no run is evaluated on es or ace_Arab."""
    frame = mixture(4).assign(language="en")
    frame["tokens_es"] = [0.0, 0.1, 0.2, 0.0] * frame["tokens"]
    frame["tokens_ace_Arab"] = [0.0, 0.0, 0.05, 0.25] * frame["tokens"]
    frame["tokens_de"] = frame["tokens"] - frame[["tokens_en", "tokens_es", "tokens_ace_Arab"]].sum(axis=1)
    table = validate_runs(frame)
    assert table.languages == ("ace_Arab", "de", "en", "es")
    assert mixture_languages(table.frame) == ("en", "de", "es", "ace_Arab")  # column order
    frame.loc[2, "tokens_es"] *= 1.01
    raises(frame, "tokens", [2])


def test_languages_named_by_the_table_or_the_caller():
    """Names that are not codes: from the 'language' column, or passed as languages=."""
    frame = runs(4, language=["english"] * 2 + ["german"] * 2)
    frame = frame.assign(tokens_english=0.6 * frame["tokens"], tokens_german=0.3 * frame["tokens"],
                         tokens_klingon=0.1 * frame["tokens"], unique_klingon=1e9)
    raises(frame, "tokens", [0, 1, 2, 3])  # klingon is neither a language value nor a code: the sum falls short
    table = validate_runs(frame, languages=["klingon"])
    assert table.languages == ("english", "german", "klingon")
    assert table.frame["unique_klingon"].dtype == np.float64
    # the validated frame remembers them: a group's rows resolve the same languages
    german = table.frame[table.frame["language"] == "german"].reset_index(drop=True)
    assert mixture_languages(german) == ("english", "german", "klingon")
    assert mixture_languages(frame.iloc[2:]) == ("german",)  # an unvalidated frame knows only its own values
    message = raises(frame, "tokens_vulcan", "", languages=["klingon", "vulcan"])
    assert "languages=['klingon', 'vulcan']" in message


def test_code_shaped_columns_outside_a_complete_mixture_are_ordinary():
    """tokens_per_step looks like a code with a script; the mixture adds up without it, so it is ordinary."""
    frame = mixture(4).assign(language=["en", "de"] * 2, tokens_per_step=[1e7, 2e7, 3e7, 4e7], unique_per_step=1.0)
    table = warned(frame)
    assert table.languages == ("de", "en") and "['tokens_per_step', 'unique_per_step']" in table.warnings[0]
    assert table.frame["tokens_per_step"].tolist() == [1e7, 2e7, 3e7, 4e7]
    assert mixture_languages(frame) == ("en", "de") and mixture_columns(frame, "tokens") == ["tokens_en", "tokens_de"]
    # without a named language the code-shaped columns are the mixture, and must add up
    message = raises(frame.drop(columns="language"), "tokens", [0, 1, 2, 3])
    assert "'tokens_per_step'" in message and "language code" in message
    with pytest.raises(ValueError, match="expected 'tokens' or 'unique'"):
        mixture_columns(frame, "unique_tokens")


def test_unknown_source_column():
    message = raises(runs(), "N_params", "", {"params": "N_params"})
    assert "available columns" in message and "'tokens'" in message


def test_unknown_canonical_name_in_mapping():
    raises(runs(), "size", "", {"size": "params"})


def test_mapping_onto_existing_column():
    raises(runs(extra=1.0), "loss", "", {"loss": "extra"})


def test_missing_required_columns():
    raises(runs().drop(columns=["loss"]), "loss", "")
    raises(runs(), "unique_tokens", "", required=("params", "tokens", "loss", "unique_tokens"))


def test_custom_required_set():
    table = validate_runs(runs().drop(columns=["tokens"]), required=("params", "loss"))
    assert "tokens" not in table.frame


@pytest.mark.parametrize("column", ["tokens", "step", "tokens_en"])
def test_non_numeric(column):
    frame = mixture(12).assign(step=0.0)
    frame = with_value(with_value(frame, column, 3, "abc"), column, 7, "1e9x")
    message = raises(frame, column, [3, 7])
    assert "non-numeric" in message and "'abc'" in message and "expected numbers" in message


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("column", ["loss", "unique_tokens", "num_languages", "unique_en"])
def test_nan_or_inf(column, value):
    frame = mixture().assign(unique_tokens=1e9, num_languages=2.0)
    raises(with_value(frame, column, 2, value), column, [2])


def test_missing_value_in_object_column():
    raises(with_value(runs(), "params", 1, None), "params", [1])


@pytest.mark.parametrize("column", POSITIVE_COLUMNS)
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive(column, value):
    frame = runs(unique_tokens=1e9)
    message = raises(with_value(with_value(frame, column, 1, value), column, 4, value), column, [1, 4])
    assert "> 0" in message


def test_negative_mixture_tokens():
    frame = mixture()
    frame.loc[2, "unique_de"] = -1.0
    message = raises(frame, "unique_de", [2])
    assert ">= 0" in message


@pytest.mark.parametrize("column, bad, low", [
    ("num_languages", [0.0, 1.5], 1),
    ("step", [-1.0, 2.5], 0),
])
def test_integer_columns(column, bad, low):
    frame = runs(5, **{column: [1.0, bad[0], 2.0, 3.0, bad[1]]})
    message = raises(frame, column, [1, 4])
    assert f"integers >= {low}" in message


def test_regime():
    frame = runs(4, regime=["pretrain", "fine-tune", "finetune", None])
    message = raises(frame, "regime", [1, 3])
    assert "'fine-tune'" in message and "pretrain" in message


def warned(frame, *args, **kwargs):
    """Validates, expecting its notes to be emitted as warnings."""
    with pytest.warns(UserWarning) as record:
        table = validate_runs(frame, *args, **kwargs)
    assert [str(w.message) for w in record] == list(table.warnings)
    return table


def replicate_note(table):
    notes = [w for w in table.warnings if "replicate" in w]
    assert len(notes) == 1, table.warnings
    return notes[0]


def test_replicates_are_kept_with_one_note():
    frame = runs(6)
    frame.loc[3, ["params", "tokens"]] = frame.loc[0, ["params", "tokens"]]  # differs only in loss
    frame.loc[5, ["params", "tokens"]] = frame.loc[4, ["params", "tokens"]]
    table = warned(frame)
    assert replicate_note(table) == ("2 replicate set(s), 4 rows equal in every design column ('params', 'tokens'), "
                                     "at rows [[0, 3], [4, 5]]: kept as replicates of one design")
    np.testing.assert_array_equal(table.frame["loss"], frame["loss"])  # every row kept, in order


def test_replicate_note_lists_the_first_sets():
    frame = pd.concat([runs(12)] * 2, ignore_index=True)
    note = replicate_note(warned(frame))
    assert note.startswith("12 replicate set(s), 24 rows")
    assert "at rows [[0, 12], [1, 13], [2, 14], [3, 15], [4, 16], [5, 17], [6, 18], [7, 19], [8, 20], [9, 21]] " \
           "... and 2 more:" in note


@pytest.mark.parametrize("column", ["group", "language", "num_languages", "run", "seed", "regime", "step",
                                    "unique_tokens", "tokens_en"])
def test_same_size_different_design_is_a_distinct_run(column):
    frame = pd.concat([mixture(3)] * 2, ignore_index=True)
    values = {"group": "a", "language": "en", "num_languages": 4.0, "run": "r1", "seed": 0, "regime": "pretrain",
              "step": 0.0, "unique_tokens": 1e8}
    if column == "tokens_en":
        frame.loc[3:, "tokens_en"] *= 0.5
        frame.loc[3:, "tokens_de"] = frame["tokens"] - frame["tokens_en"]
    else:
        alternative = {"group": "b", "language": "de", "num_languages": 8.0, "run": "r2", "seed": 1,
                       "regime": "finetune", "step": 1.0, "unique_tokens": 2e8}
        frame[column] = [values[column]] * 3 + [alternative[column]] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_runs(frame)
    with pytest.warns(UserWarning, match=r"1 replicate set\(s\), 2 rows .* at rows \[\[0, 6\]\]"):
        validate_runs(pd.concat([frame, frame.iloc[[0]].assign(loss=9.0)], ignore_index=True))


def test_bilingual_partners_and_capacity_runs_are_distinct():
    """Equal N and D: bilingual runs told apart by their partner language, capacity runs by K."""
    bilingual = pd.DataFrame({"params": 1e8, "tokens": 1e9, "loss": [3.0, 3.1, 3.2], "language": "en",
                              "num_languages": 2.0, "tokens_en": 5e8, "tokens_es": [5e8, 0.0, 0.0],
                              "tokens_fr": [0.0, 5e8, 0.0], "tokens_sw": [0.0, 0.0, 5e8]})
    capacity = pd.DataFrame({"params": 1e8, "tokens": 1e9, "loss": [3.3, 3.4, 3.5], "language": "en",
                             "group": "capacity", "num_languages": [4.0, 8.0, 16.0]})
    for frame in (bilingual, capacity):
        table = warned(frame)  # N and D are not identifiable from 3 runs of one size
        assert len(table.frame) == 3 and all("not identifiable" in w for w in table.warnings)
    assert warned(bilingual).languages == ("en", "es", "fr", "sw")


def test_group_by_column_is_a_design_column():
    frame = pd.concat([runs(3)] * 2, ignore_index=True).assign(dataset=["a"] * 3 + ["b"] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_runs(frame, group_by="dataset")
    assert "at rows [[0, 3], [1, 4], [2, 5]]" in replicate_note(warned(frame))


def test_n_free():
    frame = runs(7, group=["a"] * 5 + ["b"] * 2)
    message = raises(frame, "group", "'b'", group_by="group", n_free=4)
    assert "2 run(s)" in message and "n_free=4" in message
    validate_runs(frame, group_by="group", n_free=2)
    with pytest.raises(ValueError, match=r"group 'all runs' has 7 run\(s\); expected at least n_free=8"):
        validate_runs(frame, n_free=8)


def test_group_by_missing_column():
    raises(runs(), "dataset", "", group_by="dataset")


def test_mixture_tokens_must_add_up():
    frame = mixture(5)
    frame.loc[[1, 3], "tokens_en"] *= 1.001
    frame.loc[4, "tokens_en"] *= 1 + 1e-9  # within tolerance
    message = raises(frame, "tokens", [1, 3])
    assert "mixture tokens do not add up to 'tokens'" in message


def test_unique_without_tokens():
    raises(mixture().drop(columns=["tokens_de"]).assign(tokens_en=lambda f: f["tokens"]), "unique_de", "")


def test_rows_listing_is_truncated():
    frame = runs(30)
    frame.loc[2:, "loss"] = -1.0
    raises(frame, "loss", "[2, 3, 4, 5, 6, 7, 8, 9, 10, 11] ... and 18 more")


@pytest.mark.parametrize("column, symbol", [("params", "N"), ("tokens", "D")])
def test_constant_column_warns_per_group(column, symbol):
    frame = runs(6, group=["a"] * 3 + ["b"] * 3)
    frame.loc[3:, column] = 1e8
    with pytest.warns(UserWarning) as record:
        table = validate_runs(frame, group_by="group")
    assert len(table.warnings) == 1 and [str(w.message) for w in record] == list(table.warnings)
    assert "group 'b'" in table.warnings[0] and column in table.warnings[0]
    assert f"{symbol} is not identifiable" in table.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_runs(frame)  # across the whole table the column varies


def test_constant_column_warns_for_whole_table():
    with pytest.warns(UserWarning, match="group 'all runs': every run has the same params"):
        table = validate_runs(runs().assign(params=1e8))
    assert len(table.warnings) == 1


@pytest.mark.parametrize("items, expected", [
    (["params=N_params", " loss = val_loss "], {"params": "N_params", "loss": "val_loss"}),
    (["tokens_en=D_en", "group=a=b"], {"tokens_en": "D_en", "group": "a=b"}),
    ([], {}),
])
def test_parse_column_mapping(items, expected):
    assert parse_column_mapping(items) == expected


@pytest.mark.parametrize("items, match", [
    (["params"], "expected 'canonical=source'"),
    (["params="], "expected 'canonical=source'"),
    (["=N"], "expected 'canonical=source'"),
    (["size=N"], "unknown canonical column 'size'"),
    (["params=a", "params=b"], "mapped more than once"),
])
def test_parse_column_mapping_errors(items, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        parse_column_mapping(items)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".pq"])
def test_file_round_trip(tmp_path, suffix):
    frame = mixture().assign(language="en", regime="finetune", step=100.0, source=["x", "y", "z", "w"])
    path = tmp_path / f"runs{suffix}"
    if "csv" in suffix:
        frame.rename(columns={"params": "N"}).to_csv(path, index=False)
    else:
        frame.rename(columns={"params": "N"}).to_parquet(path, index=False)
    table = load_runs(path, {"params": "N"})
    expected = validate_runs(frame).frame
    pd.testing.assert_frame_equal(table.frame, expected, check_like=True, check_dtype=False)
    assert table.frame["tokens_en"].dtype == np.float64 and table.languages == ("de", "en")


def test_load_runs_bad_suffix_and_missing_file(tmp_path):
    path = tmp_path / "runs.xlsx"
    path.write_text("params,tokens,loss\n")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_runs(path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_runs(tmp_path / "nope.csv")


def test_bundled_chinchilla():
    path = DATA / "epoch_chinchilla" / "chinchilla_tidy.csv"
    table = load_runs(path, {"params": "N_params", "tokens": "D_tokens"})
    assert isinstance(table, RunTable) and len(table.frame) == 245 and table.warnings == ()
    assert {"params", "tokens", "loss", "C_flops"} <= set(table.frame.columns)


def test_bundled_datablations():
    mapping = parse_column_mapping(
        ["params=N_params", "tokens=D_tokens", "unique_tokens=U_unique_tokens", "loss=val_loss"])
    table = load_runs(DATA / "datablations" / "c4_runs_fit182.csv", mapping, n_free=7)
    assert len(table.frame) == 182 and table.warnings == ()
    assert (table.frame["unique_tokens"] <= table.frame["tokens"]).all()
