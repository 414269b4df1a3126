"""Distillation and alpha-supervision losses."""

import torch
import torch.nn.functional as F

from espnet_ofa.models.distill_loss import alpha_losses, layer_distill_loss, pseudo_alpha


def test_layer_loss_ignores_padding_and_matches_definition():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 4, generator=gen), torch.randn(2, 5, 4, generator=gen)
    lengths = torch.tensor([5, 2])
    total, l1, cos = layer_distill_loss(pred, target, lengths)
    frames = [(0, t) for t in range(5)] + [(1, 0), (1, 1)]
    exp_l1 = torch.stack([(pred[b, t] - target[b, t]).abs().mean() for b, t in frames]).mean()
    exp_cos = torch.stack([-F.logsigmoid(F.cosine_similarity(pred[b, t], target[b, t], dim=0))
                           for b, t in frames]).mean()
    torch.testing.assert_close(l1, exp_l1)
    torch.testing.assert_close(cos, exp_cos)
    torch.testing.assert_close(total, exp_l1 + exp_cos)
    pred_garbage = pred.clone()
    pred_garbage[1, 2:] = 1e6
    torch.testing.assert_close(layer_distill_loss(pred_garbage, target, lengths)[0], total)


def test_layer_loss_is_lowest_for_a_perfect_prediction():
    target = torch.randn(1, 6, 8)
    perfect, _, _ = layer_distill_loss(target, target, torch.tensor([6]))
    worse, _, _ = layer_distill_loss(target + 0.1, target, torch.tensor([6]))
    torch.testing.assert_close(perfect, -F.logsigmoid(torch.tensor(1.0)))
    assert worse > perfect


def test_pseudo_alpha_reaches_k_at_each_boundary():
    boundaries = torch.tensor([[2, 5, 6], [3, -1, -1]])
    target = pseudo_alpha(boundaries, 7)
    torch.testing.assert_close(target[0], torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3, 1.0, 0.0]))
    torch.testing.assert_close(target[1], torch.tensor([1 / 3] * 3 + [0.0] * 4))
    counts = target.cumsum(1)
    torch.testing.assert_close(counts[0, [1, 4, 5]], torch.tensor([1.0, 2.0, 3.0]))


def test_alpha_losses_zero_at_target_and_positive_elsewhere():
    boundaries = torch.tensor([[2, 5, 6], [3, -1, -1]])
    lengths = torch.tensor([6, 3])
    target = pseudo_alpha(boundaries, 7)
    l1, boundary = alpha_losses(target, boundaries, lengths)
    assert float(l1) == 0.0 and float(boundary) == 0.0
    uniform = torch.full((2, 7), 0.5, requires_grad=True)
    l1, boundary = alpha_losses(uniform, boundaries, lengths)
    assert l1 > 0 and boundary > 0
    (l1 + boundary).backward()
    assert uniform.grad[:, :3].abs().sum() > 0
    assert torch.all(uniform.grad[1, 3:] == 0)  # padding gets no gradient


def test_alpha_losses_clip_boundaries_past_the_utterance():
    # The segmenter may count one frame more than the CNN at the end.
    boundaries = torch.tensor([[2, 5]])
    l1, boundary = alpha_losses(pseudo_alpha(torch.tensor([[2, 4]]), 4), boundaries,
                                torch.tensor([4]))
    assert float(l1) == 0.0 and float(boundary) == 0.0


def test_pseudo_alpha_fires_cif_exactly_once_per_segment():
    """With threshold 1, CIF fires where the cumulative sum reaches an integer: at the last
    frame of each segment and nowhere else."""
    gen = torch.Generator().manual_seed(0)
    ends = torch.randint(1, 9, (300,), generator=gen).cumsum(0)
    counts = pseudo_alpha(ends[None], int(ends[-1]))[0].double().cumsum(0)
    torch.testing.assert_close(counts[ends - 1], torch.arange(1, 301, dtype=torch.float64),
                               rtol=0, atol=1e-4)
    others = torch.ones(len(counts), dtype=torch.bool)
    others[ends - 1] = False
    between = counts[others]
    assert torch.all((between - between.round()).abs() > 1e-3)  # 1/8 from an integer at least


def test_alpha_losses_count_in_float32_for_half_precision_predictions():
    # 30 s at 20 ms: a bf16 running sum has a resolution of 2 past 256.
    ends = torch.arange(4, 1501, 4)[None]
    target = pseudo_alpha(ends, 1500)
    lengths = torch.tensor([1500])
    for dtype in (torch.bfloat16, torch.float16):
        half = (target + 0.01).to(dtype).requires_grad_()
        l1, boundary = alpha_losses(half, ends, lengths)
        ref_l1, ref_boundary = alpha_losses(half.detach().float(), ends, lengths)
        assert boundary.dtype == torch.float32
        torch.testing.assert_close(boundary, ref_boundary)
        torch.testing.assert_close(l1, ref_l1)
        boundary.backward()
        assert half.grad.dtype == dtype and torch.isfinite(half.grad.float()).all()
