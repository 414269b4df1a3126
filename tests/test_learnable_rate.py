"""Adaptive rate learning: the estimator, and controlled tests with known best rates.

A synthetic task on a stand-in model (20 ms frames -> rate control -> CIF -> MLP -> mean
over output frames) with the same `LearnableRate` component that ``frontend: ofa`` uses,
and the same compute penalty: count the positive clicks among rapid +-1 clicks (about one
every 100 ms, random polarity). Averaging frames over a longer period merges neighbouring
clicks, and a +1 next to a -1 cancels: information is lost at every period above 20 ms, so
the best period is the shortest, against the penalty's pull towards long ones. From 55 ms
the rate must reach < 35 ms. A second task (below) has its best period inside the range,
where the task loss and the penalty balance.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from espnet_ofa.compression import cif, rate_alpha
from espnet_ofa.frontend.learnable_rate import (
    GRAD_SCALE,
    RMS_CLAMP,
    LearnableRate,
    RngSnapshot,
    ctc_min_input_lengths,
    relative_compute,
)
from tiny_models import UniformCIF

LOW, HIGH, START = 20.0, 90.0, 55.0
RATE_COST = 0.005
STEPS = 300


@contextmanager
def single_thread():
    """Tiny matrices: one thread is several times faster than two competing ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_batch(gen: torch.Generator, batch: int = 64):
    """(B, T, 2) 20 ms frames, (B,) lengths, (B,) targets: the click-counting task."""
    lengths = torch.randint(40, 81, (batch,), generator=gen)
    max_len = int(lengths.max())
    valid = torch.arange(max_len)[None] < lengths[:, None]
    noise = 0.1 * torch.randn(batch, max_len, generator=gen)
    u = torch.rand(batch, max_len, generator=gen)
    clicks = torch.where(u < 0.1, -1.0, torch.where(u > 0.9, 1.0, 0.0))
    x = torch.stack([clicks, noise], dim=-1)
    target = ((clicks == 1) & valid).sum(1) / lengths * 10.0
    return x * valid[..., None], lengths, target


def predictor_alpha(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A stand-in for the alpha predictor: fixed weights around 0.2 (a ~100 ms own rate)."""
    gen = torch.Generator().manual_seed(1)
    alpha = 0.15 + 0.1 * torch.rand(x.shape[:2], generator=gen)
    return alpha * (torch.arange(x.shape[1])[None] < lengths[:, None])


class StandIn(nn.Module):
    """CIF at the given weights, then an MLP per output frame, averaged over frames."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                                 nn.Linear(32, 1))

    def forward(self, x, lengths, alpha):
        out = cif(x, alpha, lengths)
        valid = torch.arange(out.frames.shape[1])[None] < out.lengths[:, None]
        per_frame = self.mlp(out.frames).squeeze(-1) * valid
        return per_frame.sum(1) / out.lengths.clamp_min(1)


def learn_rate(seed: int = 0) -> list:
    """Train the stand-in and the rate jointly; returns the period every 50 steps."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = StandIn()
    rate = LearnableRate(START, LOW, HIGH, cost=RATE_COST)
    optim = torch.optim.Adam([*model.parameters(), *rate.parameters()], lr=3e-3)
    history = [rate.value]
    for step in range(STEPS):
        x, lengths, target = make_batch(gen)
        alpha_pred = predictor_alpha(x, lengths)

        def loss_at(period: float) -> torch.Tensor:
            alpha = rate_alpha(alpha_pred, lengths, frame_period=period)
            return (model(x, lengths, alpha) - target).square().mean()

        loss, _ = rate.objective(loss_at)
        optim.zero_grad()
        loss.backward()
        optim.step()
        if (step + 1) % 50 == 0:
            history.append(round(rate.value, 1))
    return history


@pytest.mark.parametrize("seed", [0, 1])
def test_rate_goes_to_short_periods_when_the_task_needs_them(seed):
    with single_thread():
        history = learn_rate(seed=seed)
    print(f"seed {seed}: {history}")
    assert history[-1] < 35.0, f"the click task should want short periods; got {history}"


# ----------------------------------------------------------------------------- unit tests
def test_period_stays_in_range_and_reset_round_trips():
    rate = LearnableRate(40.0, 20.0, 90.0)
    assert rate.value == pytest.approx(40.0, abs=1e-4)
    with torch.no_grad():
        for raw in (-100.0, 0.0, 100.0):
            rate.raw.fill_(raw)
            assert 20.0 <= rate.value <= 90.0
    rate.reset()
    assert rate.value == pytest.approx(40.0, abs=1e-4)
    rate.reset(90.0)  # a bound is clamped just inside, where the sigmoid can still move
    assert 89.0 < rate.value < 90.0


def test_probes_are_clamped_to_what_the_model_can_run():
    rate = LearnableRate(21.0, 20.0, 90.0, limits=(20.0, 90.0))
    plus, minus = rate.probes()
    assert minus == 20.0 and plus == pytest.approx(21.0 * 1.1, abs=1e-3)
    rate = LearnableRate(60.0, 40.0, 80.0, limits=(20.0, 90.0))
    plus, minus = rate.probes()
    assert (plus, minus) == (pytest.approx(66.0, abs=1e-3), pytest.approx(54.0, abs=1e-3))


def test_combine_gives_the_central_difference_to_the_rate():
    rate = LearnableRate(50.0, 20.0, 90.0, cost=0.0)
    w = torch.tensor(2.0, requires_grad=True)
    objective, step = rate.combine(w * 3.0, w * 1.0, 55.0, 45.0)
    objective.backward()
    assert float(step.slope) == pytest.approx((6.0 - 2.0) / 10.0)
    # The first step's RMS is its own size: the normalised gradient is GRAD_SCALE * sign.
    assert float(rate.raw.grad) == pytest.approx(GRAD_SCALE)  # loss rises with p: go down
    assert float(objective.detach()) == pytest.approx(4.0)  # the surrogate adds no value
    assert float(w.grad) == pytest.approx(2.0)  # the model trains on the mean of both


def test_rate_gradient_stays_small_whatever_the_loss_scale():
    """ESPnet clips the global gradient norm: the rate must not dominate it."""
    rate = LearnableRate(50.0, 20.0, 90.0)
    for scale in (1.0, 1e4, 1e-4, 1e6):
        rate.raw.grad = None
        objective, _ = rate.combine(torch.tensor(scale), torch.tensor(0.0), 55.0, 45.0)
        objective.backward()
        assert 0 < float(rate.raw.grad) <= GRAD_SCALE * RMS_CLAMP + 1e-6


def test_cost_pushes_towards_long_periods():
    rate = LearnableRate(50.0, 20.0, 90.0, cost=1.0)
    assert float(rate.cost_term().detach()) == pytest.approx(relative_compute(50.0))
    objective, step = rate.combine(torch.tensor(1.0), torch.tensor(1.0), 55.0, 45.0)
    objective.backward()  # a flat task loss: only the cost's slope -20 / p**2 is left
    assert float(step.slope) == pytest.approx(-20.0 / 50.0 ** 2)
    assert float(rate.raw.grad) < 0  # descending raises the period
    assert float(objective.detach()) == pytest.approx(1.0 + 20.0 / 50.0)


def test_objective_replays_random_numbers_and_checks_arguments():
    rate = LearnableRate(50.0, 20.0, 90.0)
    draws = []
    rate.objective(lambda p: draws.append(torch.rand(3)) or torch.zeros(()))
    assert torch.equal(draws[0], draws[1])
    snap = RngSnapshot()
    a = torch.rand(2)
    snap.restore()
    assert torch.equal(a, torch.rand(2))
    with pytest.raises(ValueError, match="rate_range"):
        LearnableRate(50.0, 10.0, 90.0)
    with pytest.raises(ValueError, match="within the periods"):
        LearnableRate(50.0, 20.0, 90.0, limits=(20.0, 80.0))
    with pytest.raises(ValueError, match="rate_cost"):
        LearnableRate(50.0, 20.0, 90.0, cost=-1.0)
    assert not math.isnan(rate.value)


# ------------------------------------------------------------------ CTC feasibility
def test_ctc_min_input_lengths_counts_a_blank_between_repeats():
    padded = torch.tensor([[3, 3, 4, 4, 4], [5, 6, 5, 0, 0], [7, 7, 0, 0, 0]])
    lengths = torch.tensor([5, 3, 1])  # the third: one label; the padding repeats nothing
    assert ctc_min_input_lengths(padded, lengths).tolist() == [5 + 3, 3, 1]
    # ESPnet's CTC passes the targets concatenated: a repeat across two utterances is none.
    concat = torch.tensor([3, 3, 4, 4, 4, 4, 6, 4, 4])
    assert ctc_min_input_lengths(concat, torch.tensor([5, 3, 1])).tolist() == [8, 3, 1]
    with pytest.raises(ValueError, match="sum\\(target_lengths\\)"):
        ctc_min_input_lengths(concat, torch.tensor([5, 3]))


@pytest.fixture(scope="module")
def checkpoint(tiny_ofa_checkpoint):
    return tiny_ofa_checkpoint


def char_ctc_asr_model(checkpoint, vocab: int):
    """ESPnet's own ASR model, CTC only (ESPnet's CTC: zero_infinity=True), learnable rate."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel

    from espnet_ofa.frontend.espnet_hooks import attach_rate_learning
    from espnet_ofa.frontend.ofa import OFAFrontend

    torch.manual_seed(0)
    frontend = OFAFrontend(fs="16k", model=str(checkpoint), learnable_rate=True,
                           frame_period=50.0)
    encoder = TransformerEncoder(frontend.output_size(), output_size=32, attention_heads=2,
                                 linear_units=32, num_blocks=1, dropout_rate=0.0,
                                 positional_dropout_rate=0.0, attention_dropout_rate=0.0,
                                 input_layer="linear")  # no subsampling: 1 frame, 1 frame
    model = ESPnetASRModel(
        vocab_size=vocab, token_list=[f"c{i}" for i in range(vocab)], frontend=frontend,
        specaug=None, normalize=None, preencoder=None, encoder=encoder, postencoder=None,
        decoder=None, ctc=CTC(vocab, 32), joint_network=None, ctc_weight=1.0,
        report_cer=False, report_wer=False,
    )
    assert attach_rate_learning(model)
    return model


def test_ctc_utterances_infeasible_at_a_probe_do_not_pull_the_rate_longer(checkpoint,
                                                                          monkeypatch):
    """Character CTC at 50 ms: probes 55 ms (18 frames per second) and 45 ms (22 frames).

    Utterance 0 (20 letters) can be emitted at 45 ms only: ESPnet's CTC counts it as 0 loss
    at 55 ms, which would make 55 ms look better. Utterance 2 (25 letters) fits neither.
    Utterances 1 (16 letters, 2 repeats: needs exactly 18 frames) and 3 are compared as
    they are; 0 and 2 by `infeasible_ctc_value` where infeasible (2 and 7 frames missing at
    55 ms, 3 at 45 ms): a finite value that makes the longer probe look worse.
    """
    monkeypatch.delenv("ESPNET_OFA_FRAME_PERIOD", raising=False)
    monkeypatch.delenv("ESPNET_OFA_LAM", raising=False)
    vocab = 30
    letters = [list(range(1, 21)), [1, 1, 2, 3, 3, *range(4, 15)], list(range(1, 26)), [5, 6, 7]]
    text_lengths = torch.tensor([len(t) for t in letters])
    text = torch.full((4, int(text_lengths.max())), -1)  # ESPnet pads text with -1
    for i, t in enumerate(letters):
        text[i, :len(t)] = torch.tensor(t)
    gen = torch.Generator().manual_seed(0)
    speech = 0.1 * torch.randn(4, 16000, generator=gen)  # 1 s each: 49 frames of 20 ms
    lengths = torch.full((4,), 16000)

    def slope_and_stats(rows):
        model = char_ctc_asr_model(checkpoint, vocab).train()
        assert model.frontend.rate.probes() == (pytest.approx(55.0), pytest.approx(45.0))
        loss, stats, _ = model(speech[rows], lengths[rows], text[rows], text_lengths[rows])
        return model, loss, stats

    model, loss, stats = slope_and_stats([0, 1, 2, 3])
    _, _, stats_kept = slope_and_stats([1, 3])
    model.eval()
    model.frontend.set_rate(frame_period=45.0)
    with torch.no_grad():  # utterance 0 alone at 45 ms: its CTC loss (ESPnet's / B = 1)
        loss_0 = float(model(speech[[0]], lengths[[0]], text[[0]], text_lengths[[0]])[0])
    model.frontend.set_rate()
    model.train()
    # ESPnet's CTC loss is a sum over utterances / B (4 and 2); differences over 10 ms.
    log_v = math.log(vocab)
    replaced = (max(loss_0, 20 * log_v) + 2 * log_v - loss_0  # utterance 0 at 55 ms only
                + (25 + 7) * log_v - (25 + 3) * log_v)  # utterance 2 at both
    slope = float(stats["rate_slope"])
    expected = (float(stats_kept["rate_slope"]) * 2 * 10 + replaced) / (4 * 10)
    assert slope == pytest.approx(expected, rel=1e-4)
    assert slope > float(stats_kept["rate_slope"]) * 2 / 4  # the deficits point shorter
    assert float(stats["rate_infeasible"]) == pytest.approx(0.5)
    assert float(stats_kept["rate_infeasible"]) == 0.0

    # What ESPnet's own losses say (the model still trains on their mean): longer looks better.
    model.eval()
    with torch.no_grad():
        at = {}
        for period in (55.0, 45.0):
            model.frontend.set_rate(frame_period=period)
            at[period] = float(model(speech, lengths, text, text_lengths)[0])
    assert float(loss.detach()) == pytest.approx((at[55.0] + at[45.0]) / 2, rel=1e-5)
    naive = (at[55.0] - at[45.0]) / 10.0
    assert naive < slope - 0.1, (naive, slope)  # utterance 0 alone would pull it towards 55 ms


class CTCOnFrontend(nn.Module):
    """frontend -> linear -> a given CTCLoss -> (loss, stats, weight); raises on request."""

    def __init__(self, frontend, ctc_loss: nn.CTCLoss, vocab: int = 8,
                 ctc_weight: float = 1.0) -> None:
        super().__init__()
        self.frontend = frontend
        self.head = nn.Linear(frontend.output_size(), vocab)
        self.ctc_loss = ctc_loss
        self.ctc_weight = ctc_weight
        self.fail = False
        self.last_ctc = None

    def forward(self, speech, speech_lengths, text, text_lengths):
        feats, lengths = self.frontend(speech, speech_lengths)
        if self.fail:
            raise RuntimeError("out of memory, say")
        logits = self.head(feats)
        loss = self.ctc_loss(logits.log_softmax(-1).transpose(0, 1), text, lengths, text_lengths)
        self.last_ctc = loss.detach()
        loss = loss.sum() / len(lengths) if loss.dim() else loss
        # Another loss term beside CTC (think attention), with no feasibility limit.
        other = logits.square().mean()
        loss = (self.ctc_weight * loss + (1 - self.ctc_weight) * other).reshape(1)
        return loss, {"loss": loss.detach()}, torch.tensor([len(lengths)])


def test_ctc_rule_takes_out_only_the_ctc_share_of_a_mixed_loss(checkpoint, monkeypatch):
    """loss = 0.3 * CTC / B + 0.7 * other: only the CTC share of an infeasible utterance,
    0.3 * its CTC / B, is replaced (by 0.3 * `infeasible_ctc_value` / B)."""
    from espnet_ofa.frontend.espnet_hooks import attach_rate_learning
    from espnet_ofa.frontend.ofa import OFAFrontend

    monkeypatch.delenv("ESPNET_OFA_FRAME_PERIOD", raising=False)
    monkeypatch.delenv("ESPNET_OFA_LAM", raising=False)
    torch.manual_seed(0)
    frontend = OFAFrontend(fs="16k", model=str(checkpoint), learnable_rate=True,
                           frame_period=50.0)
    model = CTCOnFrontend(frontend, nn.CTCLoss(reduction="none", zero_infinity=True),
                          ctc_weight=0.3)
    assert attach_rate_learning(model)
    speech, lengths = 0.1 * torch.randn(2, 16000), torch.tensor([16000, 16000])
    text = torch.tensor([[*range(1, 8), *range(1, 8), *range(1, 7)], [1, 2, 3, *[0] * 17]])
    text_lengths = torch.tensor([20, 3])  # 20 letters: 22 frames at 45 ms, 18 at 55 ms
    _, stats, _ = model.train()(speech, lengths, text, text_lengths)

    model.eval()
    loss_at, ctc_at = {}, {}
    with torch.no_grad():
        for period in (55.0, 45.0):
            frontend.set_rate(frame_period=period)
            loss_at[period] = float(model(speech, lengths, text, text_lengths)[0])
            ctc_at[period] = model.last_ctc
    assert float(ctc_at[55.0][0]) == 0.0 and float(ctc_at[45.0][0]) > 0  # zero_infinity
    loss_0, log_v = float(ctc_at[45.0][0]), math.log(8)
    replaced = 0.3 * (max(loss_0, 20 * log_v) + 2 * log_v) / 2  # 18 frames of 20 at 55 ms
    expected = (loss_at[55.0] + replaced - loss_at[45.0]) / 10.0
    assert float(stats["rate_slope"]) == pytest.approx(expected, rel=1e-4)
    assert float(stats["rate_infeasible"]) == pytest.approx(0.5)


def test_ctc_rule_warns_when_it_cannot_apply_and_leaves_no_hooks_behind(checkpoint,
                                                                         monkeypatch):
    from espnet_ofa.frontend.espnet_hooks import attach_rate_learning
    from espnet_ofa.frontend.ofa import OFAFrontend

    monkeypatch.delenv("ESPNET_OFA_FRAME_PERIOD", raising=False)
    monkeypatch.delenv("ESPNET_OFA_LAM", raising=False)
    speech, lengths = 0.1 * torch.randn(2, 16000), torch.tensor([16000, 12000])
    text, text_lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])

    def model_with(ctc_loss):
        frontend = OFAFrontend(fs="16k", model=str(checkpoint), learnable_rate=True,
                               frame_period=50.0)
        model = CTCOnFrontend(frontend, ctc_loss).train()
        assert attach_rate_learning(model)
        return model

    reduced = model_with(nn.CTCLoss(reduction="mean", zero_infinity=True))
    with pytest.warns(RuntimeWarning, match="reduction='none'"):
        reduced(speech, lengths, text, text_lengths)

    model = model_with(nn.CTCLoss(reduction="none", zero_infinity=True))
    model.fail = True
    with pytest.raises(RuntimeError, match="out of memory"):
        model(speech, lengths, text, text_lengths)
    model.fail = False
    _, stats, _ = model(speech, lengths, text, text_lengths)  # all feasible: nothing left out
    assert float(stats["rate_infeasible"]) == 0.0
    assert not model.ctc_loss._forward_hooks  # the recorder of the failed step is gone too


# ------------------------------------------------------------ an interior optimum, via hooks
# "Spaced clicks": +-1 clicks at least 3 frames (60 ms) apart (3 + a geometric extra, mean
# 4 frames), random polarity; the target is the number of positive clicks per frame. Below
# 40 ms an output frame never holds parts of two clicks, so a linear read-out of
# [relu(frame), relu(-frame)] is exact; above it a +1 and a -1 increasingly share frames
# and cancel, and the task loss rises steeply. The compute cost pushes up from below: the
# best period of loss + cost is inside the range (about 50 ms).
SPACED_COST = 1.6e-4
SPACED_STEPS = 300


def spaced_clicks(gen: torch.Generator, batch: int):
    """(B, T, 1) 20 ms frames, (B,) lengths, (B,) targets."""
    lengths = torch.randint(40, 81, (batch,), generator=gen)
    max_len = int(lengths.max())
    u = torch.rand(batch, max_len, generator=gen).clamp_min(1e-9)
    gaps = 3 + torch.floor(torch.log(u) / math.log(0.5)).long()  # geometric extra, mean 1
    start = torch.randint(0, 4, (batch, 1), generator=gen)
    pos = (start + torch.cumsum(gaps, 1) - gaps[:, :1]).clamp_max(max_len)
    sign = torch.where(torch.rand(batch, max_len, generator=gen) < 0.5, -1.0, 1.0)
    clicks = torch.zeros(batch, max_len + 1).scatter_(1, pos, sign)[:, :max_len]
    clicks = clicks * (torch.arange(max_len)[None] < lengths[:, None])
    return clicks[..., None], lengths, (clicks == 1).sum(1) / lengths


def spaced_frontend(checkpoint, **conf):
    from espnet_ofa.frontend.ofa import OFAFrontend

    frontend = OFAFrontend(fs="16k", model=str(checkpoint), layer=0, **conf)
    frontend.student = UniformCIF(frontend.student)
    return frontend


def pooled_features(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T', 1) frames -> (B, 2) mean over frames of [relu(x), relu(-x)] (x10: O(1) weights)."""
    phi = 10.0 * torch.cat([feats.clamp_min(0), (-feats).clamp_min(0)], dim=-1)
    return phi.sum(1) / lengths.clamp_min(1)[:, None]


class SpacedTask(nn.Module):
    """An ESPnet-style model: frontend -> linear read-out -> (loss, stats, weight)."""

    def __init__(self, frontend) -> None:
        super().__init__()
        self.frontend = frontend
        self.head = nn.Linear(2, 1, bias=False)
        nn.init.zeros_(self.head.weight)  # an untrained read-out prefers no period

    def forward(self, speech, speech_lengths, target):
        feats, lengths = self.frontend(speech, speech_lengths)
        pred = self.head(pooled_features(feats, lengths)).squeeze(-1)
        loss = (pred - target).square().mean().reshape(1)
        return loss, {"loss": loss.detach()}, torch.tensor([len(target)])


def spaced_objective_grid(checkpoint, seed: int = 1234, size: int = 1024) -> dict:
    """Grid search of the objective: the task loss after training at each fixed period
    (the read-out is linear, so training to convergence is a least-squares solve; held-out
    loss) + SPACED_COST * 20 / p, every 1 ms over 20-90 ms. Returns {period: objective}."""
    gen = torch.Generator().manual_seed(seed)
    train, test = spaced_clicks(gen, size), spaced_clicks(gen, size)
    frontend = spaced_frontend(checkpoint, frame_period=50.0).eval()
    objective = {}
    with single_thread(), torch.no_grad():
        for period in range(20, 91):
            frontend.set_rate(frame_period=float(period))
            fit = pooled_features(*frontend(*train[:2]))
            weights = torch.linalg.lstsq(fit, train[2][:, None]).solution
            pred = (pooled_features(*frontend(*test[:2])) @ weights).squeeze(-1)
            loss = float((pred - test[2]).square().mean())
            objective[period] = loss + SPACED_COST * relative_compute(float(period))
    return objective


@pytest.fixture(scope="module")
def spaced_grid(checkpoint):
    return spaced_objective_grid(checkpoint)


def learn_spaced(checkpoint, seed: int, start: float) -> list:
    """Train the read-out and the rate through the ESPnet hooks; the period every 50 steps."""
    from espnet_ofa.frontend.espnet_hooks import attach_rate_learning

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    frontend = spaced_frontend(checkpoint, learnable_rate=True, frame_period=start,
                               rate_cost=SPACED_COST)
    model = SpacedTask(frontend).train()
    assert attach_rate_learning(model)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = [round(frontend.rate.value, 1)]
    for step in range(SPACED_STEPS):
        loss, stats, _ = model(*spaced_clicks(gen, 64))
        optim.zero_grad()
        loss.sum().backward()
        optim.step()
        if (step + 1) % 50 == 0:
            history.append(round(frontend.rate.value, 1))
    return history


def test_spaced_task_has_an_interior_optimum(spaced_grid):
    best = min(spaced_grid, key=spaced_grid.get)
    assert 35 <= best <= 70, best
    # A real bowl: both ends and +-15 ms from the best are clearly worse.
    for period in (20, 90, best - 15, best + 15):
        assert spaced_grid[period] > 1.2 * spaced_grid[best], (period, spaced_grid)


@pytest.mark.parametrize("seed,start", [(0, 30.0), (1, 85.0)])
def test_learnt_rate_finds_the_interior_optimum_through_the_hooks(checkpoint, spaced_grid,
                                                                  monkeypatch, seed, start):
    monkeypatch.delenv("ESPNET_OFA_FRAME_PERIOD", raising=False)
    best = min(spaced_grid, key=spaced_grid.get)
    with single_thread():
        history = learn_spaced(checkpoint, seed, start)
    print(f"grid optimum {best} ms; learnt from {start} ms (seed {seed}): {history}")
    assert abs(history[-1] - best) <= 5.0, (best, history)
