"""Rows a law can use (atlas_jax.data.select): --where, finetuning rows, pooled languages, ATLAS variants."""

import pytest

import atlas_jax as aj
from atlas_jax.data.select import atlas_variants, select_rows


@pytest.fixture(scope="module")
def campaign():
    return aj.load_campaign()[0].frame


def test_finetuning_rows_are_left_out_with_a_note(campaign):
    frame, notes = select_rows(campaign, "chinchilla", group_by="language")
    n_ft = int((campaign["regime"] == "finetune").sum())
    assert n_ft > 0 and len(frame) == len(campaign) - n_ft and (frame["regime"] == "pretrain").all()
    assert notes == [f"left out {n_ft} finetuning row(s) (regime 'finetune'): law 'chinchilla' describes pretraining"]
    kept, _ = select_rows(campaign, "finetune_curve")
    assert len(kept) == len(campaign)


def test_pooled_languages_and_where(campaign):
    _, notes = select_rows(campaign, "chinchilla")
    assert any("pooled into one fit; use --group-by language" in n for n in notes)
    frame, notes = select_rows(campaign, "chinchilla", where="language == 'en' and group == 'monolingual'")
    assert set(frame["language"]) == {"en"} and set(frame["group"]) == {"monolingual"}
    assert notes[0].startswith("--where \"language == 'en' and group == 'monolingual'\" keeps")
    assert not any("pooled" in n for n in notes)
    with pytest.raises(ValueError, match="not a valid row filter"):
        select_rows(campaign, "chinchilla", where="no_such_column > 1")
    with pytest.raises(ValueError, match="keeps no row"):
        select_rows(campaign, "chinchilla", where="loss < 0")
    with pytest.raises(ValueError, match="every row is a finetuning curve"):
        select_rows(campaign[campaign["regime"] == "finetune"], "atlas")


def test_each_language_gets_its_largest_variant(campaign):
    frame, _ = select_rows(campaign, "atlas", group_by="language")
    parts = atlas_variants(frame, "language")
    assert set(parts["transfer"]) == {"en", "fr", "ru", "zh", "bn", "sw", "yo"}  # the campaign's targets
    assert set(parts["monolingual"]) == {"ja", "pt", "de", "vi", "es"}           # only their own loss curves
    assert "other" not in parts
    forced = atlas_variants(frame, "language", "monolingual")
    assert list(forced) == ["monolingual"] and set(forced["monolingual"]) == set(frame["language"].astype(str))
    with pytest.raises(ValueError, match="'ja'.*co-sampled"):
        atlas_variants(frame, "language", "transfer")
    with pytest.raises(ValueError, match="mixes target languages"):
        atlas_variants(frame, None)
    with pytest.raises(ValueError, match="--variant: expected one of"):
        atlas_variants(frame, "language", "full")
