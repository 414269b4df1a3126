"""INTEGRATION (slow): egs2/fsdd/{slu1,st1} on the OFA model of the FSDD recipe run.

Stages 1-10 of both recipes side by side, in the recipe copies of conftest.py's
``fsdd_recipes`` (whose asr1 stages 11-13 ``test_recipe_integration.py`` runs meanwhile on
the other xdist worker). Their training, decoding and scoring are the same s2t.sh stages as
asr1's and run end to end in ``test_recipe_scale.py``'s SLURP and CoVoST 2 smokes.

Set ESPNET_OFA_SKIP_RECIPE_E2E=1 to skip this module.
"""

import os
import re

import pytest

from conftest import FSDD_DATA_OPTS, FSDD_FIRST_STOP_STAGE, finish_recipe, recipe_env, start_recipe

pytestmark = pytest.mark.skipif(
    os.environ.get("ESPNET_OFA_SKIP_RECIPE_E2E", "") not in ("", "0"),
    reason="ESPNET_OFA_SKIP_RECIPE_E2E is set")


def test_slu1_and_st1_prepare_their_data_on_the_same_ofa_model(fsdd_recipes, fsdd_recordings):
    """Data preparation (synthetic intents and German over the digits), token lists and
    statistics, whose model build reads every training config (OFA and log-mel), reusing
    the asr1 run's OFA model rather than pretraining again. Training, decoding and scoring
    are the same s2t.sh stages as asr1's and the SLURP/CoVoST 2 smokes'."""
    egs = fsdd_recipes.check().recipes
    env = recipe_env(FSDD=fsdd_recordings.parent)
    common = (f'--local_data_opts "{FSDD_DATA_OPTS}" --frame_periods "40" --nj 1 '
              f'--stop_stage {FSDD_FIRST_STOP_STAGE} --fixed_rate_periods "" '
              '--max_parallel_exps 1')  # each recipe's statistics in one process
    procs = {name: start_recipe(egs / name, common, env) for name in ("slu1", "st1")}
    outputs = {name: finish_recipe(p) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outputs[name][-4000:]
        assert "running ../ssl1/run.sh" not in outputs[name]  # the OFA model is reused
        assert re.search(rf"\(\w+.sh\) Stage {FSDD_FIRST_STOP_STAGE}[: ]", outputs[name])
        stats = {d.parent.parent.name
                 for d in (egs / name / "exp").glob("*stats*/*/train/feats_stats.npz")}
        assert any(key.startswith("ofa_ssl_train_ofa_tiny_") for key in stats), stats
        assert any(key.startswith("default_") for key in stats), stats  # the log-mel config
    intents = (egs / "slu1/dump/raw/test/text").read_text().splitlines()
    assert intents and all(len(line.split()) >= 3 for line in intents)  # <intent> <word>
    german = (egs / "st1/dump/raw/test/text").read_text()
    assert german != (egs / "asr1/dump/raw/test/text").read_text()
    assert "synthetic" in (egs / "st1/data/README.txt").read_text()
