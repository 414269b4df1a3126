"""Behaviour of the compression core: CIF, expand and rate control."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet_ofa.compression import (
    LENGTH_EPS,
    Rate,
    RateSampler,
    cif,
    expand,
    fixed_rate_alpha,
    rate_alpha,
    target_lengths,
)
from espnet_ofa.compression.rate import LAM_SAMPLE_MAX, lam_to_period, period_to_lam


def random_batch(lengths, channels=4, seed=0, dtype=torch.float32):
    """Padded (B, T, C) frames, (B, T) predictor weights in (0, 1) and (B,) lengths.

    Padding holds large garbage so that any leak shows up in the outputs.
    """
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    max_len = int(lengths.max())
    x = torch.randn(len(lengths), max_len, channels, generator=gen, dtype=dtype)
    # Smooth, phone-like weights: a random walk through a sigmoid, around 0.25.
    walk = torch.cumsum(0.3 * torch.randn(len(lengths), max_len, generator=gen), dim=1)
    alpha = torch.sigmoid(walk.clamp(-3, 3) - 1.1).to(dtype)
    pad = torch.arange(max_len)[None, :] >= lengths[:, None]
    x = x.masked_fill(pad[..., None], 1e6)
    alpha = alpha.masked_fill(pad, 7.0)
    return x, alpha, lengths


lengths_strategy = st.lists(st.integers(1, 60), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(lengths=lengths_strategy, seed=st.integers(0, 10_000))
def test_lam_zero_is_identity(lengths, seed):
    x, alpha_pred, lengths = random_batch(lengths, seed=seed)
    out = cif(x, rate_alpha(alpha_pred, lengths, lam=0.0), lengths)
    assert torch.equal(out.lengths, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out.frames[b, :n], x[b, :n])
        assert torch.all(out.frames[b, n:] == 0)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_strategy, seed=st.integers(0, 10_000), lam=st.floats(0.0, 2.0))
def test_lengths_and_mass_conservation(lengths, seed, lam):
    x, alpha_pred, lengths = random_batch(lengths, seed=seed, dtype=torch.float64)
    alpha = rate_alpha(alpha_pred, lengths, lam=lam)
    out = cif(x, alpha, lengths)
    total = torch.stack([alpha[b, :n].sum() for b, n in enumerate(lengths.tolist())])
    assert torch.equal(out.lengths, torch.floor(total + LENGTH_EPS).long())
    unfired = (total - out.lengths).clamp_min(0)
    torch.testing.assert_close(out.mass, total - unfired)
    # Every full output frame received exactly beta = 1 of weight.
    per_frame = torch.zeros(len(lengths), int(out.lengths.max()) + 1, dtype=torch.float64)
    per_frame.scatter_add_(1, out.slot_index.flatten(1), out.slot_weight.flatten(1))
    for b, n in enumerate(out.lengths.tolist()):
        torch.testing.assert_close(per_frame[b, :n], torch.ones(n, dtype=torch.float64),
                                   atol=2 * LENGTH_EPS, rtol=0)


def test_output_frame_is_weighted_sum_with_split_boundary_frame():
    x = torch.tensor([[[1.0], [10.0], [100.0]]])
    alpha = torch.tensor([[0.6, 0.6, 0.8]])  # cumsum 0.6, 1.2, 2.0
    out = cif(x, alpha, torch.tensor([3]))
    assert out.lengths.tolist() == [2]
    # Frame 1 gives 0.4 to output 0 and 0.2 to output 1.
    torch.testing.assert_close(out.frames[0, :, 0], torch.tensor([0.6 * 1 + 0.4 * 10,
                                                                  0.2 * 10 + 0.8 * 100]))


@pytest.mark.parametrize("frame_period", [20.0, 25.0, 33.3, 40.0, 45.0, 60.0, 71.7, 90.0])
def test_exact_mode_hits_requested_period(frame_period):
    gen = torch.Generator().manual_seed(int(frame_period * 10))
    # 0.5 s to 30 s at 20 ms.
    lengths = torch.randint(25, 1501, (16,), generator=gen)
    x, alpha_pred, lengths = random_batch(lengths.tolist(), seed=int(frame_period))
    out = cif(x, rate_alpha(alpha_pred, lengths, frame_period=frame_period), lengths)
    wanted = torch.round(lengths.double() * 20.0 / frame_period).long()
    assert torch.equal(out.lengths, wanted)
    achieved_period = 20.0 * lengths.double() / out.lengths
    assert torch.all((achieved_period - frame_period).abs() <= frame_period / out.lengths + 1e-9)


def test_exact_mode_beyond_predictor_rate_scales_down():
    lengths = torch.tensor([200])
    alpha_pred = torch.full((1, 200), 0.5)  # the predictor alone gives 40 ms
    alpha = rate_alpha(alpha_pred, lengths, frame_period=80.0)
    assert cif(torch.zeros(1, 200, 1), alpha, lengths).lengths.tolist() == [50]
    torch.testing.assert_close(alpha, torch.full((1, 200), 0.25, dtype=torch.float64))


def test_target_lengths_never_empty():
    assert target_lengths(torch.tensor([1, 2, 0, 9]), 90.0).tolist() == [1, 1, 0, 2]


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 80), min_size=2, max_size=4),
       seed=st.integers(0, 10_000), period=st.floats(20.0, 90.0))
def test_padded_batch_equals_each_utterance_alone(lengths, seed, period):
    # float64: in float32 the batch and the lone utterance sum alpha in another order.
    x, alpha_pred, lengths = random_batch(lengths, seed=seed, dtype=torch.float64)
    batch_alpha = rate_alpha(alpha_pred, lengths, frame_period=period)
    batch = cif(x, batch_alpha, lengths)
    batch_expanded = expand(batch.frames, batch)
    for b, n in enumerate(lengths.tolist()):
        one_len = torch.tensor([n])
        one_alpha = rate_alpha(alpha_pred[b : b + 1, :n], one_len, frame_period=period)
        torch.testing.assert_close(one_alpha, batch_alpha[b : b + 1, :n])
        alone = cif(x[b : b + 1, :n], one_alpha, one_len)
        m = int(alone.lengths)
        assert int(batch.lengths[b]) == m
        torch.testing.assert_close(batch.frames[b, :m], alone.frames[0])
        assert torch.all(batch.frames[b, m:] == 0)
        torch.testing.assert_close(batch_expanded[b, :n], expand(alone.frames, alone)[0])
        assert torch.all(batch_expanded[b, n:] == 0)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("num_frames", [1, 7, 12, 100, 1501])
def test_fixed_rate_equals_avgpool(factor, num_frames):
    x = torch.randn(2, num_frames, 5, dtype=torch.float64)
    lengths = torch.tensor([num_frames, num_frames])
    alpha = fixed_rate_alpha(lengths, num_frames, 20.0 * factor, dtype=torch.float64)
    out = cif(x, alpha, lengths)
    if num_frames < factor:  # AvgPool1d refuses this; CIF gives no frame
        assert out.lengths.tolist() == [0, 0] and out.frames.shape == (2, 0, 5)
        return
    pooled = torch.nn.AvgPool1d(factor, stride=factor)(x.transpose(1, 2)).transpose(1, 2)
    assert out.lengths.tolist() == [pooled.shape[1]] * 2
    torch.testing.assert_close(out.frames, pooled)


def test_fixed_rate_fractional_window():
    x = torch.arange(6, dtype=torch.float64).view(1, 6, 1)
    alpha = fixed_rate_alpha(torch.tensor([6]), 6, 30.0, dtype=torch.float64)  # 1.5 frames
    out = cif(x, alpha, torch.tensor([6]))
    # Windows [0, 1.5), [1.5, 3), [3, 4.5), [4.5, 6) averaged with 2/3 weights.
    expected = torch.tensor([0 + 0.5, 0.5 + 2, 3 + 0.5 * 4, 0.5 * 4 + 5], dtype=torch.float64) * (2 / 3)
    torch.testing.assert_close(out.frames[0, :, 0], expected)


def test_tail_threshold_emits_rescaled_partial_frame():
    x = torch.tensor([[[2.0], [4.0], [6.0]]])
    alpha = torch.tensor([[0.5, 0.5, 0.3]])
    lengths = torch.tensor([3])
    assert cif(x, alpha, lengths).lengths.tolist() == [1]
    assert cif(x, alpha, lengths, tail_threshold=0.5).lengths.tolist() == [1]
    out = cif(x, alpha, lengths, tail_threshold=0.25)
    assert out.lengths.tolist() == [2]
    torch.testing.assert_close(out.frames[0, :, 0], torch.tensor([3.0, 6.0]))


def test_gradcheck_cif_and_expand():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    alpha = (0.2 + 0.6 * torch.rand(2, 6, dtype=torch.float64, generator=gen)).requires_grad_()
    lengths = torch.tensor([6, 4])

    def frames_then_back(x, alpha):
        out = cif(x, alpha, lengths)
        return out.frames, expand(out.frames * 2.0, out)

    assert torch.autograd.gradcheck(frames_then_back, (x, alpha))


def test_gradcheck_rate_alpha_exact_mode():
    gen = torch.Generator().manual_seed(4)
    alpha_pred = torch.rand(3, 9, dtype=torch.float64, generator=gen).requires_grad_()
    lengths = torch.tensor([9, 7, 5])
    for period in (30.0, 55.0, 200.0):
        assert torch.autograd.gradcheck(
            lambda a: rate_alpha(a, lengths, frame_period=period), (alpha_pred,))
    assert torch.autograd.gradcheck(lambda a: rate_alpha(a, lengths, lam=1.5), (alpha_pred,))


@settings(max_examples=40, deadline=None)
@given(segments=st.lists(st.integers(1, 6), min_size=1, max_size=12), seed=st.integers(0, 999))
def test_expand_inverts_cif_on_piecewise_constant_input(segments, seed):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(len(segments), 3, generator=gen, dtype=torch.float64)
    x = torch.cat([v.expand(n, 3) for v, n in zip(values, segments)])[None]
    alpha = torch.cat([torch.full((n,), 1.0 / n, dtype=torch.float64) for n in segments])[None]
    lengths = torch.tensor([x.shape[1]])
    out = cif(x, alpha, lengths)
    assert int(out.lengths) == len(segments)
    torch.testing.assert_close(out.frames[0], values)
    torch.testing.assert_close(expand(out.frames, out), x)


def test_expand_gives_dropped_tail_the_last_frame():
    x = torch.tensor([[[1.0], [1.0], [5.0]]])
    out = cif(x, torch.tensor([[0.5, 0.5, 0.4]]), torch.tensor([3]))
    assert int(out.lengths) == 1
    torch.testing.assert_close(expand(out.frames, out)[0, :, 0], torch.tensor([1.0, 1.0, 1.0]))


def test_rate_sampler_is_reproducible_and_resumable():
    a = RateSampler("frame_period", 20.0, 90.0, seed=7)
    draws = [a.sample().frame_period for _ in range(200)]
    assert all(20.0 <= d <= 90.0 for d in draws)
    assert max(draws) - min(draws) > 50  # actually spread over the range
    b = RateSampler("frame_period", 20.0, 90.0, seed=7)
    assert [b.sample().frame_period for _ in range(200)] == draws
    c = RateSampler("lam", 0.0, 1.0, seed=1)
    c.sample()
    state = c.state_dict()
    after = [c.sample().lam for _ in range(5)]
    c2 = RateSampler("lam", 0.0, 1.0, seed=99)
    c2.load_state_dict(state)
    assert [c2.sample().lam for _ in range(5)] == after
    assert all(v.lam is not None and v.frame_period is None for v in (c.sample(),))


ALPHA = torch.full((2, 5), 0.5)
LENGTHS = torch.tensor([5, 3])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cif(torch.zeros(2, 5, 3), -ALPHA, LENGTHS), "alpha must be >= 0"),
        (lambda: cif(torch.zeros(2, 5, 3), ALPHA * math.nan, LENGTHS), "NaN"),
        (lambda: cif(torch.zeros(2, 5, 3), ALPHA[:, :4], LENGTHS), "shape"),
        (lambda: cif(torch.zeros(2, 5), ALPHA, LENGTHS), "x must be"),
        (lambda: cif(torch.zeros(2, 5, 3), ALPHA, torch.tensor([6, 3])), "longer than"),
        (lambda: cif(torch.zeros(2, 5, 3), ALPHA, torch.tensor([5])), "lengths"),
        (lambda: cif(torch.zeros(2, 5, 3), ALPHA, LENGTHS, beta=0.0), "beta"),
        (lambda: cif(torch.zeros(2, 5, 3), ALPHA, LENGTHS, tail_threshold=2.0), "tail_threshold"),
        (lambda: rate_alpha(ALPHA, LENGTHS, frame_period=19.9), "frame_period"),
        (lambda: rate_alpha(ALPHA, LENGTHS, frame_period=math.inf), "frame_period"),
        (lambda: rate_alpha(ALPHA, LENGTHS, frame_period=math.nan), "frame_period"),
        (lambda: rate_alpha(ALPHA, LENGTHS, lam=-0.1), "lam must be in"),
        (lambda: rate_alpha(ALPHA, LENGTHS, lam=2.5), "lam must be in"),
        (lambda: rate_alpha(ALPHA, LENGTHS, lam=0.5, frame_period=40.0), "only one of"),
        (lambda: rate_alpha(ALPHA, LENGTHS), "no rate given"),
        (lambda: cif(torch.ones(2, 5, 3, dtype=torch.long), ALPHA, LENGTHS),
         "x must be a floating-point tensor"),
        (lambda: rate_alpha(ALPHA * math.inf, LENGTHS, lam=1.0), "alpha_pred"),
        (lambda: rate_alpha(ALPHA, torch.tensor([5, 9]), lam=1.0), "longer than"),
        (lambda: rate_alpha(ALPHA[0], LENGTHS, lam=1.0), "alpha_pred must be"),
        (lambda: fixed_rate_alpha(LENGTHS, 5, 10.0), "frame_period"),
        (lambda: RateSampler("frame_period", 10.0, 90.0), "frame_period"),
        (lambda: RateSampler("speed", 0.0, 1.0), "mode"),
        (lambda: expand(torch.zeros(1, 2, 3), cif(torch.zeros(2, 5, 3), ALPHA, LENGTHS)), "frames"),
    ],
)
def test_bad_input_raises_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_heavy_frame_feeds_several_outputs():
    x = torch.tensor([[[1.0], [3.0]]], dtype=torch.float64)
    out = cif(x, torch.tensor([[2.5, 0.5]], dtype=torch.float64), torch.tensor([2]))
    assert out.lengths.tolist() == [3]
    torch.testing.assert_close(out.frames[0, :, 0],
                               torch.tensor([1.0, 1.0, 0.5 * 1 + 0.5 * 3], dtype=torch.float64))
    torch.testing.assert_close(expand(out.frames, out)[0, :, 0],
                               torch.tensor([(1 + 1 + 0.5 * 2) / 2.5, 2.0], dtype=torch.float64))


PRED = torch.tensor([[0.2, 0.6, 1.0, 0.4, 0.8]], dtype=torch.float64)  # sums to 3


@pytest.mark.parametrize("lam, expected", [
    (0.0, [1.0] * 5),
    (0.5, [0.6, 0.8, 1.0, 0.7, 0.9]),  # (1 - lam) + lam * a
    (1.0, [0.2, 0.6, 1.0, 0.4, 0.8]),
    (1.5, [0.1, 0.3, 0.5, 0.2, 0.4]),  # the authors' (2 - lam) * a, not a / lam
    (2.0, [0.2] * 5),  # zero weights, mixed up to one frame (sum 1)
])
def test_lam_weights_follow_the_authors_code(lam, expected):
    alpha = rate_alpha(PRED, torch.tensor([5]), lam=lam)
    torch.testing.assert_close(alpha[0], torch.tensor(expected, dtype=torch.float64))
    assert int(cif(torch.ones(1, 5, 1), alpha, torch.tensor([5])).lengths) == max(
        1, math.floor(sum(expected) + LENGTH_EPS))


def test_lam_mode_gives_every_nonempty_utterance_a_frame():
    x, alpha_pred, lengths = random_batch([1, 2, 7, 40], seed=3)
    lengths = torch.cat([lengths, torch.tensor([0])])
    x = torch.cat([x, torch.zeros(1, x.shape[1], x.shape[2])])
    alpha_pred = torch.cat([alpha_pred, torch.zeros(1, alpha_pred.shape[1])])
    for lam in (1.0, 1.7, 1.99999, 2.0):
        out = cif(x, rate_alpha(alpha_pred, lengths, lam=lam), lengths)
        assert torch.all(out.lengths[:4] >= 1), (lam, out.lengths)
        assert int(out.lengths[4]) == 0
    at_two = rate_alpha(alpha_pred, lengths, lam=2.0)
    assert cif(x, at_two, lengths).lengths.tolist() == [1, 1, 1, 1, 0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_exact_lengths_from_half_precision_predictions(dtype):
    gen = torch.Generator().manual_seed(11)
    lengths = torch.randint(200, 1600, (8,), generator=gen)
    lengths[0] = 1600
    _, alpha_pred, lengths = random_batch(lengths.tolist(), seed=5)
    x = torch.randn(8, 1600, 3, dtype=dtype)
    for period in (20.0, 27.0, 40.0, 53.0, 60.0, 77.0, 90.0):
        alpha = rate_alpha(alpha_pred.to(dtype), lengths, frame_period=period)
        out = cif(x, alpha, lengths)
        assert torch.equal(out.lengths, torch.round(lengths * 20.0 / period).long()), period
        assert out.frames.dtype == dtype


def test_exact_lengths_under_cpu_autocast():
    torch.manual_seed(0)
    predictor = torch.nn.Sequential(torch.nn.Linear(16, 1), torch.nn.Sigmoid())
    x = torch.randn(2, 1600, 16)
    lengths = torch.tensor([1600, 1333])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        alpha_pred = predictor(x).squeeze(-1)
        assert alpha_pred.dtype == torch.bfloat16
        for period in (30.0, 60.0, 90.0):
            out = cif(x, rate_alpha(alpha_pred, lengths, frame_period=period), lengths)
            assert torch.equal(out.lengths, torch.round(lengths * 20.0 / period).long())


def test_exact_lengths_on_an_hour_of_audio():
    num = 180_000  # 1 h at 20 ms
    gen = torch.Generator().manual_seed(0)
    alpha_pred = torch.sigmoid(torch.randn(1, num, generator=gen) - 1.2)  # float32
    lengths = torch.tensor([num])
    x = torch.zeros(1, num, 1)
    for period in range(20, 95, 5):
        out = cif(x, rate_alpha(alpha_pred, lengths, frame_period=float(period)), lengths)
        assert int(out.lengths) == round(num * 20 / period), period
    for period in (30.0, 70.0, 90.0):  # constant weights: a rounding error would add up
        fixed = fixed_rate_alpha(lengths, num, period)
        assert int(cif(x, fixed, lengths).lengths) == num * 20 // period, period


@pytest.mark.parametrize("batch, frames", [(0, 5), (3, 0), (0, 0)])
def test_empty_batches_give_empty_outputs(batch, frames):
    x = torch.zeros(batch, frames, 4)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    for rate in (dict(frame_period=40.0), dict(lam=0.5)):
        alpha = rate_alpha(torch.rand(batch, frames), lengths, **rate)
        assert alpha.shape == (batch, frames)
        out = cif(x, alpha, lengths)
        assert out.frames.shape == (batch, 0, 4) and out.lengths.tolist() == [0] * batch
        assert expand(out.frames, out).shape == (batch, frames, 4)


@pytest.mark.parametrize("fields, message", [
    (dict(), "no rate given: set frame_period"),
    (dict(frame_period=60, lam=0.5), "only one of frame_period and lam"),
    (dict(frame_period=math.nan), "finite number of milliseconds"),
    (dict(frame_period=-5.0), "finite number of milliseconds > 0"),
    (dict(frame_period=True), "number of milliseconds"),
    (dict(frame_period="60"), "number of milliseconds"),
    (dict(lam=2.5), r"lam must be in \[0, 2\]"),
    (dict(lam=math.inf), r"lam must be in \[0, 2\]"),
    (dict(lam="0.5"), "lam must be a number"),
])
def test_rate_construction_checks_what_holds_for_any_model(fields, message):
    with pytest.raises(ValueError, match=message):
        Rate(**fields)


def test_rate_check_within_owns_the_range_rule():
    rate = Rate(frame_period=60)
    assert rate.frame_period == 60.0 and isinstance(rate.frame_period, float)
    assert rate.check_within((20.0, 90.0)) is rate
    with pytest.raises(ValueError, match=r"95 ms is outside the range this model was trained "
                                         r"for, \[20, 90\] ms; choose a period within it"):
        Rate(frame_period=95).check_within((20.0, 90.0))
    assert Rate(lam=1.9).check_within((20.0, 90.0)).lam == 1.9  # lam has no period range
    # rate_alpha, target_lengths, fixed_rate_alpha and the sampler ask the same object.
    for call in (lambda: rate_alpha(ALPHA, LENGTHS, frame_period=10.0),
                 lambda: target_lengths(LENGTHS, 10.0),
                 lambda: fixed_rate_alpha(LENGTHS, 5, 10.0),
                 lambda: RateSampler("frame_period", 10.0, 90.0)):
        with pytest.raises(ValueError, match="frame_period 10 ms is outside the periods CIF"):
            call()


def draws(sampler, n=2000):
    return [sampler.sample(step=i) for i in range(n)]


@pytest.mark.parametrize("mode, low, high, beta, mean, var", [
    ("frame_period", None, None, 1.0, 55.0, 70.0**2 / 12),
    ("lam", None, None, 1.0, 0.5, 1 / 12),
    ("lam", None, None, 0.5, 0.5, 1 / 8),  # Beta(a, a) has variance 1 / (4 (2a + 1))
    ("lam", 0.2, 0.6, 4.0, 0.4, 0.4**2 / 36),
    ("lam_beyond", None, None, 1.0, 1.5, 1 / 12),
])
def test_rate_sampler_moments(mode, low, high, beta, mean, var):
    values = torch.tensor([r.frame_period if mode == "frame_period" else r.lam
                           for r in draws(RateSampler(mode, low, high, seed=3, beta=beta))],
                          dtype=torch.float64)
    lo, hi = RateSampler(mode, low, high).low, RateSampler(mode, low, high).high
    assert float(values.min()) >= lo and float(values.max()) <= hi
    spread = math.sqrt(var / len(values))
    assert abs(float(values.mean()) - mean) < 4 * spread
    assert abs(float(values.var()) - var) < 0.12 * var


def test_log_period_sampler_draws_the_periods_log_uniformly():
    sampler = RateSampler("log_frame_period", seed=3)
    periods = torch.tensor([r.frame_period for r in draws(sampler)], dtype=torch.float64)
    assert float(periods.min()) >= 20.0 and float(periods.max()) <= 90.0
    logs, span = periods.log(), math.log(90.0 / 20.0)
    assert abs(float(logs.mean()) - math.log(20.0 * 90.0) / 2) < 4 * span / math.sqrt(12 * 2000)
    assert abs(float(logs.var()) - span**2 / 12) < 0.12 * span**2 / 12
    # The same share at 20-30 ms as at 60-90 ms (both a ratio of 1.5): ln 1.5 / ln 4.5 = 27 %,
    # where the uniform sampler gives them 14 % and 43 %.
    short, long_ = float((periods <= 30).double().mean()), float((periods >= 60).double().mean())
    assert short == pytest.approx(math.log(1.5) / span, abs=0.04)
    assert long_ == pytest.approx(math.log(1.5) / span, abs=0.04)
    assert sampler.period_range() == (20.0, 90.0) and sampler.lam_range is None
    assert sampler.valid_rate().frame_period == pytest.approx(math.sqrt(20.0 * 90.0))  # median
    with pytest.raises(ValueError, match="outside the periods CIF"):
        RateSampler("log_frame_period", 10.0, 90.0)


def test_rate_sampler_lam_modes_of_the_port():
    # lam_from_period: p ~ U(20, 90) through the port's lam = 9/7 (1 - 20/p).
    lams = [r.lam for r in draws(RateSampler("lam_from_period", seed=1))]
    periods = torch.tensor([20.0 / (1 - 7 * lam / 9) for lam in lams], dtype=torch.float64)
    assert 0.0 <= min(lams) and max(lams) <= 1.0
    assert float(periods.min()) >= 20.0 - 1e-9 and float(periods.max()) <= 90.0 + 1e-9
    assert abs(float(periods.mean()) - 55.0) < 4 * math.sqrt(70.0**2 / 12 / len(lams))
    # lam_beyond stays below 2 - 1e-5, where the weights would vanish.
    beyond = [r.lam for r in draws(RateSampler("lam_beyond", 1.0, 2.0, seed=2))]
    assert min(beyond) >= 1.0 and max(beyond) <= LAM_SAMPLE_MAX < 2.0
    # lam_both: both ranges, in the asked proportion.
    both = torch.tensor([r.lam for r in draws(RateSampler("lam_both", seed=4, beyond_prob=0.3))])
    share = float((both > 1.0).double().mean())
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(both))
    assert float(both.min()) >= 0.0 and float(both.max()) <= LAM_SAMPLE_MAX


def test_rate_sampler_is_a_function_of_seed_and_step():
    for mode in ("frame_period", "lam", "lam_from_period", "lam_beyond", "lam_both"):
        a, b = RateSampler(mode, seed=5, beta=0.7), RateSampler(mode, seed=5, beta=0.7)
        b.sample()  # free draws do not move the draws by step
        assert [a.sample(step=s) for s in (9, 0, 3)] == [b.sample(step=s) for s in (9, 0, 3)]
        other = RateSampler(mode, seed=6, beta=0.7)
        assert [a.sample(step=s) for s in range(5)] != [other.sample(step=s) for s in range(5)]


def test_period_lam_mapping_is_the_ports_and_sets_the_trained_range():
    for period in (20.0, 33.0, 55.0, 90.0):
        assert period_to_lam(period) == pytest.approx(9 / 7 * (1 - 20 / period))
        assert lam_to_period(period_to_lam(period)) == pytest.approx(period)
    assert lam_to_period(1.5) == pytest.approx(180.0)  # (2 - lam) * 2/9 fires per frame
    assert lam_to_period(2.0) == math.inf
    assert RateSampler("frame_period", 30.0, 70.0).frame_period_range == (30.0, 70.0)
    assert RateSampler("lam_from_period", 25.0, 80.0).frame_period_range == (25.0, 80.0)
    assert RateSampler("lam").frame_period_range == pytest.approx((20.0, 90.0))
    assert RateSampler("lam", 0.5, 1.0).frame_period_range == pytest.approx((20 / (0.5 + 1 / 9),
                                                                            90.0))
    assert RateSampler("lam_beyond").frame_period_range == pytest.approx((90.0, 9e6), rel=1e-6)
    assert RateSampler("lam_both").frame_period_range == pytest.approx((20.0, 9e6), rel=1e-6)
    assert RateSampler("frame_period").valid_rate() == Rate(frame_period=55.0)
    assert RateSampler("lam_beyond", 1.0, 1.5).valid_rate() == Rate(lam=1.25)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="lam", low=0.0, high=1.5), "use mode lam for lam in"),
    (dict(mode="lam_beyond", low=0.5, high=2.0), r"low in \[1, 2\]"),
    (dict(mode="lam", low=0.8, high=0.2), "low must be <= high"),
    (dict(mode="lam", beta=0.0), "beta"),
    (dict(mode="lam_both", beyond_prob=1.5), "beyond_prob"),
    (dict(seed=-1), "seed"),
    (dict(mode="lam", low=-0.5), r"lam must be in \[0, 2\]"),
])
def test_rate_sampler_bad_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RateSampler(**kwargs)


DTYPES = st.sampled_from([torch.float32, torch.float64, torch.bfloat16])
RATES = st.one_of(st.floats(20.0, 90.0).map(lambda p: {"frame_period": p}),
                  st.floats(0.0, 2.0).map(lambda lam: {"lam": lam}))


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 400), min_size=1, max_size=4), seed=st.integers(0, 9999),
       rate=RATES, dtype=DTYPES)
def test_property_exact_lengths_for_any_dtype(lengths, seed, rate, dtype):
    x, alpha_pred, lengths = random_batch(lengths, seed=seed)
    x, alpha_pred = x.to(dtype), alpha_pred.to(dtype)
    alpha = rate_alpha(alpha_pred, lengths, **rate)
    out = cif(x, alpha, lengths)
    if "frame_period" in rate:
        wanted = torch.round(lengths.double() * 20.0 / rate["frame_period"]).long().clamp_min(1)
        assert torch.equal(out.lengths, wanted)
    else:
        assert torch.all(out.lengths >= 1)
        assert torch.equal(out.lengths, torch.floor(alpha.sum(1) + LENGTH_EPS).long())
    assert out.frames.dtype == dtype and out.frames.shape[1] == int(out.lengths.max())


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 120), min_size=2, max_size=4), seed=st.integers(0, 9999),
       rate=RATES, dtype=DTYPES, garbage=st.sampled_from([0.0, -3.0, 1e4, math.nan, math.inf]))
def test_property_padding_never_leaks(lengths, seed, rate, dtype, garbage):
    x, alpha_pred, lengths = random_batch(lengths, seed=seed)
    x, alpha_pred = x.to(dtype), alpha_pred.to(dtype)
    pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]

    def run(x_pad: float, alpha_pad: float):
        alpha = rate_alpha(alpha_pred.masked_fill(pad, alpha_pad), lengths, **rate)
        out = cif(x.masked_fill(pad[..., None], x_pad), alpha, lengths)
        return out, expand(out.frames * 2.0, out)

    reference, back = run(0.0, 0.0)
    # alpha must stay finite and >= 0 everywhere, so only x's padding takes NaN/Inf.
    other, other_back = run(garbage, abs(garbage) if math.isfinite(garbage) else 5.0)
    assert torch.equal(reference.lengths, other.lengths)
    assert torch.equal(reference.frames, other.frames)
    assert torch.equal(back, other_back)
    assert torch.all(back[pad] == 0)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 80), min_size=1, max_size=3), seed=st.integers(0, 9999),
       rate=RATES, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_property_gradients_are_finite_and_stay_off_padding(lengths, seed, rate, dtype):
    x, alpha_pred, lengths = random_batch(lengths, seed=seed, dtype=dtype)
    x, alpha_pred = x.requires_grad_(), alpha_pred.requires_grad_()
    out = cif(x, rate_alpha(alpha_pred, lengths, **rate), lengths)
    back = expand(out.frames, out)
    (out.frames.square().sum() + back.sin().sum()).backward()
    pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
    for grad in (x.grad, alpha_pred.grad):
        assert grad is not None and bool(torch.isfinite(grad).all())
    assert torch.all(x.grad[pad] == 0) and torch.all(alpha_pred.grad[pad] == 0)
