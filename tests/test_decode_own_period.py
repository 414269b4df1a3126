"""Decoding each downstream at its own period only (s2t.sh --decode_own_period true)."""

import pytest

from espnet_ofa.recipe.decode import decode_rates, own_period_only
from espnet_ofa.recipe.experiments import JITTER, POOLED, SAMPLED
from espnet_ofa.recipe.results import _switch_exp


@pytest.mark.parametrize("variant, trained_at, own_period, expected", [
    (None, 40.0, True, True),       # trained at one period: that period only
    (None, 40.0, False, False),     # default: switched to every asked period
    (None, None, True, False),      # a learnt rate: its own rule (decode_rates' learned)
    (SAMPLED, None, True, False),   # one model for every period: decoded at every period
    (POOLED, 80.0, False, True),    # the pooled rival and the jitter control: always
    (JITTER, 47.1, False, True),
])
def test_which_models_are_decoded_at_their_own_period(variant, trained_at, own_period, expected):
    assert own_period_only(variant, trained_at, own_period) is expected


def test_own_period_decoding_replaces_the_asked_periods():
    asked = [20, 40, 60, 80]
    assert decode_rates(asked, trained_at=60.0,
                        own_period_only=own_period_only(None, 60.0, True)) == [60.0]
    assert decode_rates(asked, trained_at=60.0,
                        own_period_only=own_period_only(None, 60.0, False)) == asked


def _row(exp, trained, decoded):
    return {"exp": exp, "frontend": "ofa", "train_frame_period": trained,
            "frame_period": decoded, "learned": False, "compression": "cif",
            "ssl_period_range": [20.0, 90.0], "variant": None}


def test_plot_switches_only_a_model_decoded_at_several_periods():
    own = [_row(f"exp/p{p}", float(p), float(p)) for p in (20, 40, 80)]
    assert _switch_exp(own) is None
    switched = own + [_row("exp/p80", 80.0, 40.0), _row("exp/p20", 20.0, 40.0)]
    assert _switch_exp(switched) == "exp/p20"  # of the switched ones, nearest 40 ms
