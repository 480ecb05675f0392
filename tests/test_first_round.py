"""How many simulations the first network gets when the user gives none (RunOptions.first_round_simulations)."""
from __future__ import annotations

import pytest

from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.options import (DEFAULT_SIMULATIONS, SELF_REFINING_SIMULATIONS, Budget, NetworkOptions,
                               RefineOptions, RunOptions, from_keywords)


def test_a_fit_that_refines_itself_starts_smaller_than_a_network_to_keep():
    assert SELF_REFINING_SIMULATIONS < DEFAULT_SIMULATIONS
    assert RunOptions().first_round_simulations == SELF_REFINING_SIMULATIONS


@pytest.mark.parametrize("options", [
    RunOptions(network=NetworkOptions(save="somewhere")),                 # kept for other spectra
    RunOptions(network=NetworkOptions(load="somewhere")),                 # not trained here
    RunOptions(network=NetworkOptions(exposure_range=(0.5, 2.0))),        # made for other exposures
    RunOptions(network=NetworkOptions(config=NPEConfig(exposure_range=(0.5, 2.0)))),
    RunOptions(refine=RefineOptions(enabled=False)),                      # nothing would ask for more
], ids=["save", "load", "exposure_range", "config exposure_range", "no refinement"])
def test_every_other_network_gets_the_papers_ten_thousand(options):
    assert not options.refines_itself
    assert options.first_round_simulations == DEFAULT_SIMULATIONS == 10_000


def test_what_the_user_gives_is_what_runs():
    assert RunOptions(budget=Budget(n_simulations=700)).first_round_simulations == 700
    assert RunOptions(budget=Budget(n_simulations=20_000),
                      network=NetworkOptions(save="x")).first_round_simulations == 20_000
    # multi-round: its own total, split over the rounds
    multi = RunOptions(budget=Budget(rounds=3))
    assert not multi.refines_itself
    assert multi.first_round_simulations == 3 * 1000


def test_sbi_fit_keywords_reach_the_rule():
    assert from_keywords({}, {}).first_round_simulations == SELF_REFINING_SIMULATIONS
    assert from_keywords({}, {"save": "x"}).first_round_simulations == DEFAULT_SIMULATIONS
