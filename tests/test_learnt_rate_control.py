"""The learnt rate's jitter control, and rate learning under CTC that stays feasible.

* The control trains at the learnt period held fixed with the learnt rate's two probes
  (+-10 %) and their mean loss: the objective, the fixed period, reading the learnt period
  of a finished experiment, the recipe's plan and stage-11 fill-in, and RESULTS.md.
* Utterances that CTC cannot emit at a probe keep a finite signal that grows with their
  frame deficit; on a character CTC task whose compute cost pushes towards long periods,
  the learnt period stays where every utterance has the frames CTC needs, and without the
  penalty the same run ends where many do not.
"""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from espnet_ofa.frontend.learnable_rate import (
    DEFAULT_DELTA,
    LearnableRate,
    ctc_min_input_lengths,
    infeasible_ctc_value,
)
from espnet_ofa.recipe.experiments import (
    JITTER,
    LEARNED,
    fill_learnt_period,
    learnt_period_placeholder,
    plan_experiments,
)
from tiny_models import UniformCIF


@pytest.fixture
def checkpoint(tiny_ofa_checkpoint):
    """The tiny random OFA model built once per run (conftest.py)."""
    return tiny_ofa_checkpoint


pytestmark = pytest.mark.usefixtures("no_rate_override")  # conftest.py


# ------------------------------------------------------------------ the jitter control
def test_control_trains_on_the_probes_mean_without_moving_the_period():
    rate = LearnableRate(47.0, 20.0, 90.0, learn=False)
    assert not rate.raw.requires_grad and rate.value == pytest.approx(47.0, abs=1e-4)
    plus, minus = rate.probes()
    assert (plus, minus) == (pytest.approx(47.0 * 1.1, abs=1e-3), pytest.approx(47.0 * 0.9, abs=1e-3))
    weight = torch.tensor(2.0, requires_grad=True)
    objective, step = rate.combine(weight * 3.0, weight * 1.0, plus, minus)
    assert float(objective.detach()) == pytest.approx(4.0)  # (6 + 2) / 2: the mean, no cost
    objective.backward()
    assert float(weight.grad) == pytest.approx(2.0) and rate.raw.grad is None
    assert float(step.slope) == pytest.approx(4.0 / (plus - minus))  # still logged


def test_jitter_control_frontend_runs_both_probes_through_the_hooks(checkpoint):
    from espnet_ofa.frontend.espnet_hooks import attach_rate_learning
    from espnet_ofa.frontend.ofa import OFAFrontend

    torch.manual_seed(0)
    frontend = OFAFrontend(model=str(checkpoint), frame_period=47.0, probe_jitter=True)
    assert frontend.rate.delta == DEFAULT_DELTA
    model = FramesTask(frontend)
    assert attach_rate_learning(model)
    speech, lengths = 0.1 * torch.randn(2, 8000), torch.tensor([8000, 6000])
    optim = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        loss, stats, _ = model.train()(speech, lengths)
        optim.zero_grad()
        loss.sum().backward()
        optim.step()
    assert frontend.rate.value == pytest.approx(47.0, abs=1e-4)  # never learnt
    model.eval()
    at = {}
    with torch.no_grad():
        for period in frontend.rate.probes():
            frontend.set_rate(frame_period=period)
            at[period] = float(model(speech, lengths)[0])
        frontend.set_rate()
        assert float(model(speech, lengths)[1]["frame_period"]) == pytest.approx(47.0, abs=1e-4)
    model.train()
    torch.manual_seed(1)
    loss, _, _ = model(speech, lengths)
    assert float(loss.detach()) == pytest.approx(sum(at.values()) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="probe_jitter must be true"):
        OFAFrontend(model=str(checkpoint), frame_period=47.0, probe_jitter=0.7)


class FramesTask(nn.Module):
    """frontend -> linear -> squared output (a loss that depends on the frames it gets)."""

    def __init__(self, frontend) -> None:
        super().__init__()
        self.frontend = frontend
        self.head = nn.Linear(frontend.output_size(), 1)

    def forward(self, speech, speech_lengths):
        feats, lengths = self.frontend(speech, speech_lengths)
        loss = (self.head(feats).squeeze(-1).square().sum(1) / lengths).mean().reshape(1)
        return loss, {"loss": loss.detach()}, torch.tensor([len(lengths)])


def test_learnt_period_is_read_from_a_finished_experiment(checkpoint, tmp_path):
    from espnet_ofa.frontend.ofa import OFAFrontend, learnt_period

    conf = {"frontend": "ofa", "frontend_conf": {
        "fs": "16k", "model": str(checkpoint), "frame_period": 40, "learnable_rate": True,
        "rate_range": [30, 80], "rate_cost": 0.05}}
    exp = tmp_path / "asr_learned"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    frontend = OFAFrontend(**conf["frontend_conf"])
    frontend.rate.reset(52.25)
    state = {f"frontend.{k}": v for k, v in frontend.state_dict().items()}
    state["encoder.weight"] = torch.zeros(2)
    torch.save(state, exp / "valid.loss.best.pth")
    assert learnt_period(exp / "config.yaml", exp / "valid.loss.best.pth") == pytest.approx(
        52.25, abs=1e-3)
    extra = f"--frontend_conf frame_period={learnt_period_placeholder(exp)} --seed 1"
    assert fill_learnt_period(extra, lambda e: 52.25) == (
        "--frontend_conf frame_period=52.25 --seed 1")
    with pytest.raises(ValueError, match="not a learnt-rate model"):
        conf["frontend_conf"]["learnable_rate"] = False
        (exp / "config.yaml").write_text(yaml.safe_dump(conf))
        learnt_period(exp / "config.yaml", exp / "valid.loss.best.pth")
    with pytest.raises(FileNotFoundError, match="train the learnt-rate model first"):
        learnt_period(exp / "config.yaml", exp / "missing.pth")


def test_recipe_plans_a_control_per_learnt_rate_run(tmp_path):
    learned = {"frontend": "ofa", "frontend_conf": {"model": "x.pth", "frame_period": 40,
                                                    "learnable_rate": True, "rate_cost": 0.05}}
    (tmp_path / "train_learned.yaml").write_text(yaml.safe_dump(learned))
    plan = plan_experiments("asr", [str(tmp_path / "train_learned.yaml")], "exp", [], [],
                            "m.pth", seeds=2, jitter_control=True)
    assert [(e.exp_dir, e.kind) for e in plan] == [
        ("exp/asr_train_learned", LEARNED), ("exp/asr_train_learned_seed1", LEARNED),
        ("exp/asr_train_learned_jitter", JITTER), ("exp/asr_train_learned_jitter_seed1", JITTER)]
    control = plan[3]
    assert control.stats_key == plan[1].stats_key and control.seed == 1
    assert control.extra == [
        "--frontend_conf model=m.pth", "--seed 1", "--frontend_conf learnable_rate=false",
        "--frontend_conf rate_cost=0", "--frontend_conf probe_jitter=true",
        "--frontend_conf frame_period={learnt_period:exp/asr_train_learned_seed1}"]
    assert plan_experiments("asr", [str(tmp_path / "train_learned.yaml")], "exp")[-1].kind \
        == LEARNED  # off by default


def test_results_put_the_control_beside_the_learnt_rate():
    from espnet_ofa.recipe.decode import decode_rates, variant
    from espnet_ofa.recipe.results import render

    conf = {"frontend": "ofa", "frontend_conf": {"frame_period": 47.1, "probe_jitter": True,
                                                 "learnable_rate": False}}
    assert variant(conf) == JITTER
    assert decode_rates([20, 40], trained_at=47.1, own_period_only=True) == [47.1]

    def row(exp, errors, **extra):
        per_utt = {f"u{i:02d}": [int(i % 10 < errors), 5] for i in range(20)}
        return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": 47.1,
                "train_frame_period": 47.1, "learned": False, "metric": "WER",
                "value": 2.0 * errors, "WER": 2.0 * errors, "num_utts": 20,
                "achieved_period": 47.1, "gmacs_per_second": 0.1, "rtf": 0.1,
                "frontend": "ofa", "compression": "cif", "per_utt": per_utt, **extra}

    rows = [row("exp/asr_p40", 3),
            row("exp/asr_learned", 2, learned=True, train_frame_period=None, rate="learned"),
            row("exp/asr_learned_jitter", 4, variant=JITTER, rate="p47.1")]
    text = render(rows, env={"date": "now"})
    section = text[text.index("## The learnt rate against its jitter control"):]
    assert "|test|47.1|4.00|8.00|+4.00 [" in section
    assert "|+4.00|" in section  # the one run's paired difference


def test_controls_of_several_runs_are_one_model_paired_run_by_run():
    """Each control sits at its own learnt-rate run's period: over pretraining and
    downstream seeds the controls are one model (one row, mean ± sd, an interval over the
    runs), and each run's control is also set against the learnt-rate run it copies."""
    from espnet_ofa.recipe.results import render

    def row(exp, period, errors, **extra):
        per_utt = {f"u{i:02d}": [int(i % 10 < errors), 5] for i in range(20)}
        return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
                "train_frame_period": period, "learned": False, "metric": "WER",
                "value": 2.0 * errors, "WER": 2.0 * errors, "num_utts": 20,
                "achieved_period": period, "gmacs_per_second": 0.1, "rtf": 0.1,
                "frontend": "ofa", "compression": "cif", "per_utt": per_utt, **extra}

    learnt = dict(learned=True, train_frame_period=None, rate="learned")
    runs = [("", 35.0, 2, 5), ("_seed1", 37.0, 3, 4), ("_sslseed1", 41.0, 2, 2),
            ("_sslseed1_seed1", 39.0, 4, 4)]  # (seed suffix, period, learnt, control errors)
    rows = [row("exp/asr_p40", 40.0, 3)]
    for suffix, period, errors, control in runs:
        rows += [row(f"exp/asr_learned{suffix}", period, errors, **learnt),
                 row(f"exp/asr_learned_jitter{suffix}", period, control, variant=JITTER,
                     rate=f"p{period:g}")]
    text = render(rows, env={"date": "now"})
    section = text[text.index("## The learnt rate against its jitter control"):]
    section = section[:section.index("\n## ")]
    table = [line for line in section.splitlines() if line.startswith("|test|")]
    assert len(table) == 1, table
    cells = table[0].strip("|").split("|")
    assert cells[1] == "35.0 / 37.0 / 41.0 / 39.0"
    assert cells[2] == "5.50 ± 1.91" and cells[3] == "7.50 ± 2.52"
    assert cells[4].startswith("+2.00 [")
    # Run by run, (pretraining seed, downstream seed): (0, 0), (0, 1), (1, 0), (1, 1).
    assert cells[5] == "+6.00 / +2.00 / +0.00 / +0.00"
    assert "learnt rate 2 × 2 × 20, jitter control 2 × 2 × 20" in section


def test_learnt_rate_is_compared_with_the_best_period_of_the_grid():
    """Besides the nearest period, the learnt rate faces the grid's best model (lowest WER,
    here 80 ms, far from the learnt 45 ms): the grid search it is meant to replace. The
    report shows that table even with no baseline to set OFA against."""
    from espnet_ofa.recipe.results import comparison, render

    def row(exp, trained, period, errors, **extra):
        per_utt = {f"u{i:02d}": [int(i % 10 < errors), 5] for i in range(20)}
        return {"exp": exp, "decode": "d", "test_set": "test", "frame_period": period,
                "train_frame_period": trained, "learned": False, "metric": "WER",
                "value": 2.0 * errors, "WER": 2.0 * errors, "num_utts": 20,
                "achieved_period": period, "frontend": "ofa", "compression": "cif",
                "per_utt": per_utt, **extra}

    rows = [row("exp/asr_p40", 40.0, 40.0, 5), row("exp/asr_p80", 80.0, 80.0, 1),
            row("exp/asr_p20", 20.0, 20.0, 6),
            row("exp/asr_learned", None, 45.0, 3, learned=True, rate="learned")]
    lines = comparison(rows)
    learnt = next(line for line in lines if line.startswith("|test|45.0|"))
    cells = learnt.strip("|").split("|")
    assert cells[3:5] == ["40 ms", "10.00"]        # the nearest: learnt is 4 points better
    assert cells[5].startswith("-4.00 [")
    assert cells[6] == "80 ms: 2.00"               # the best of the grid
    assert cells[7].startswith("+4.00 [")          # learnt - best: 4 points worse
    text = render(rows, env={"date": "now"})
    assert "OFA against the baselines" not in text  # no baseline, no seeds: no such table
    assert learnt in text[text.index("## Learnt rates against the OFA models"):]


# ------------------------------------------------------------------ CTC feasibility
def test_infeasible_value_is_finite_and_grows_with_the_deficit():
    reference = torch.tensor([3.0, 50.0, 0.0])
    need, deficit = torch.tensor([10, 10, 4]), torch.tensor([1, 2, 3])
    value = infeasible_ctc_value(reference, need, deficit, vocab_size=11)
    log_v = math.log(11)
    # At least what a model that knows nothing pays at the limit (need * log V).
    assert value.tolist() == pytest.approx([11 * log_v, 50 + 2 * log_v, 7 * log_v])
    more = infeasible_ctc_value(reference, need, deficit + 1, vocab_size=11)
    assert torch.all(more > value) and torch.isfinite(more).all()


VOCAB, FRAMES, MAX_CHARS = 11, 50, 17  # blank + 10 letters; 1 s of 20 ms frames


def letters_batch(gen: torch.Generator, batch: int = 32):
    """Features that spell 8-17 letters (no two equal neighbours) over 1 s of 20 ms frames:
    (B, 50, 11) one-hot + noise, (B,) lengths, (B, 17) letters padded with -1, (B,) counts."""
    counts = torch.randint(8, MAX_CHARS + 1, (batch,), generator=gen)
    steps = torch.randint(1, VOCAB - 1, (batch, MAX_CHARS), generator=gen)
    steps[:, 0] = torch.randint(0, VOCAB - 1, (batch,), generator=gen)
    letters = torch.cumsum(steps, 1) % (VOCAB - 1) + 1  # a step never returns to the same
    text = letters.masked_fill(torch.arange(MAX_CHARS)[None] >= counts[:, None], -1)
    position = torch.arange(FRAMES)[None] * counts[:, None] // FRAMES
    feats = 0.05 * torch.randn(batch, FRAMES, VOCAB, generator=gen)
    feats.scatter_add_(2, letters.gather(1, position)[..., None], torch.ones(batch, FRAMES, 1))
    return feats, torch.full((batch,), FRAMES), text, counts


class LetterCTC(nn.Module):
    """frontend -> ESPnet's CTC (zero_infinity, per-utterance losses) over letters."""

    def __init__(self, frontend) -> None:
        from espnet2.asr.ctc import CTC

        super().__init__()
        self.frontend = frontend
        self.ctc = CTC(VOCAB, VOCAB)

    def forward(self, speech, speech_lengths, text, text_lengths):
        feats, lengths = self.frontend(speech, speech_lengths)
        loss = self.ctc(feats, lengths, text, text_lengths).reshape(1)
        return loss, {"loss": loss.detach()}, torch.tensor([len(text)])


def learn_letters(checkpoint, seed: int, steps: int = 150) -> float:
    from espnet_ofa.frontend.espnet_hooks import attach_rate_learning
    from espnet_ofa.frontend.ofa import OFAFrontend

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # A compute cost that alone would take the period to 90 ms.
    frontend = OFAFrontend(model=str(checkpoint), layer=0, learnable_rate=True,
                           frame_period=40.0, rate_cost=1.0)
    frontend.student = UniformCIF(frontend.student)
    model = LetterCTC(frontend).train()
    assert attach_rate_learning(model)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss, _, _ = model(*letters_batch(gen))
        optim.zero_grad()
        loss.sum().backward()
        optim.step()
    return frontend.rate.value


def test_learnt_rate_on_letter_ctc_stays_feasible(checkpoint, monkeypatch):
    from espnet_ofa.compression import target_lengths
    from espnet_ofa.frontend import espnet_hooks

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        period = learn_letters(checkpoint, seed=0)
        # The same run where an infeasible utterance only counts as its other probe's loss:
        # no signal from the deficit.
        monkeypatch.setattr(espnet_hooks, "infeasible_ctc_value",
                            lambda reference, need, deficit, vocab_size: reference)
        unguarded = learn_letters(checkpoint, seed=0)
    finally:
        torch.set_num_threads(threads)
    _, lengths, text, counts = letters_batch(torch.Generator().manual_seed(99), batch=256)
    need = ctc_min_input_lengths(text.clamp_min(0), counts)
    assert int(counts.max()) == MAX_CHARS

    def infeasible(p: float) -> float:
        return float((target_lengths(lengths, p) < need).float().mean())

    print(f"learnt {period:.1f} ms (infeasible {infeasible(period):.2f}); without the "
          f"penalty {unguarded:.1f} ms (infeasible {infeasible(unguarded):.2f})")
    assert infeasible(period) == 0.0  # every utterance has the frames CTC needs
    assert period > 45.0  # and the cost still bought a long period
    assert infeasible(unguarded) > 0.3
