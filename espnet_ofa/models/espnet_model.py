"""OFA distillation pretraining as an ESPnet model (loss, stats, weight)."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_ofa.compression import INPUT_PERIOD_MS, Rate, RateSampler, cif, expand
from espnet_ofa.models.distill_loss import alpha_losses, layer_distill_loss
from espnet_ofa.models.student import OFAStudent


class OFADistillModel(AbsESPnetModel):
    """Distils a frozen teacher into an `OFAStudent` at a rate sampled per batch.

    The teacher is kept *outside* the module tree: it is frozen and can be rebuilt from
    its source, so it stays out of checkpoints, out of DDP's parameter sync and out of the
    optimizer. `_apply` still moves it along with the model (``.to(device)``, ``.half()``).

    Args:
        student: the model being trained.
        teacher: a frozen `espnet_ofa.teachers.Teacher` yielding the student's target layers.
        rate_sampler: draws the rate of each training batch, by step; its
            ``frame_period_range`` must be the student's (the range the checkpoint claims).
        target_rate: ``"compressed"`` compares at the student's rate (teacher states
            compressed with the same CIF weights); ``"frame"`` at 20 ms via `expand`.
        valid_frame_period: the fixed period of validation batches (comparable epochs);
            by default the sampler's mid-range rate (`RateSampler.valid_rate`).
        cos_weight, alpha_l1_weight, boundary_weight: loss weights.
    """

    def __init__(
        self,
        student: OFAStudent,
        teacher: torch.nn.Module,
        rate_sampler: RateSampler,
        target_rate: str = "compressed",
        valid_frame_period: Optional[float] = None,
        cos_weight: float = 1.0,
        alpha_l1_weight: float = 1.0,
        boundary_weight: float = 0.1,
    ) -> None:
        super().__init__()
        if target_rate not in ("compressed", "frame"):
            raise ValueError(f"target_rate must be 'compressed' or 'frame', got {target_rate!r}")
        trained = tuple(float(v) for v in rate_sampler.frame_period_range)
        if tuple(student.config.frame_period_range) != trained:
            raise ValueError(
                f"the student's frame_period_range {student.config.frame_period_range} is not "
                f"the range the rate sampler trains, {trained}; build the student with "
                "frame_period_range=rate_sampler.frame_period_range"
            )
        self.student = student
        self.__dict__["teacher"] = teacher  # not a submodule: see the class docstring
        self.rate_sampler = rate_sampler
        self.target_rate = target_rate
        if valid_frame_period is None:
            self.valid_rate = student.check_rate(rate_sampler.valid_rate())
        else:
            self.valid_rate = student.check_rate(Rate(frame_period=valid_frame_period))
        self.cos_weight = cos_weight
        self.alpha_l1_weight = alpha_l1_weight
        self.boundary_weight = boundary_weight
        # Checkpointed, so a resumed run draws the same rates as an uninterrupted one.
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.teacher._apply(fn)
        return self

    def next_rate(self) -> Rate:
        if not self.training:
            return self.valid_rate
        rate = self.rate_sampler.sample(step=int(self.num_steps))
        self.num_steps += 1
        return rate

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        boundaries: Optional[torch.Tensor] = None,
        boundaries_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """
        Args:
            speech: (B, N) 16 kHz waveforms; speech_lengths: (B,).
            boundaries: (B, K) pseudo segment ends at 20 ms, padded with -1 (optional).
        """
        rate = self.next_rate()
        out = self.student(speech, speech_lengths, frame_period=rate.frame_period, lam=rate.lam)
        teacher_out = self.teacher(speech, speech_lengths)
        predictions = self.student.predict(out.last_hidden)

        stats: Dict[str, torch.Tensor] = {}
        loss = speech.new_zeros(())
        for layer, pred, target in zip(self.student.config.target_layers, predictions,
                                       teacher_out.hidden):
            target = self._align(target, out.compression.alpha.shape[1])
            if self.target_rate == "compressed":
                # Same weights, detached: the targets must not pull the rate around.
                target = cif(target, out.compression.alpha.detach(), out.frame_lengths).frames
                layer_loss, l1, cos = layer_distill_loss(pred, target, out.lengths, self.cos_weight)
            else:
                pred = expand(pred, out.compression)
                layer_loss, l1, cos = layer_distill_loss(pred, target, out.frame_lengths,
                                                         self.cos_weight)
            loss = loss + layer_loss
            stats[f"loss_layer{layer}"] = layer_loss.detach()
            stats[f"l1_layer{layer}"] = l1.detach()
            stats[f"cos_layer{layer}"] = cos.detach()
        stats["loss_distill"] = loss.detach()

        if out.alpha_pred is not None and boundaries is not None:
            alpha_l1, boundary = alpha_losses(out.alpha_pred, boundaries, out.frame_lengths)
            loss = loss + self.alpha_l1_weight * alpha_l1 + self.boundary_weight * boundary
            stats["loss_alpha_l1"] = alpha_l1.detach()
            stats["loss_boundary"] = boundary.detach()

        ratio = out.lengths.sum() / out.frame_lengths.sum().clamp_min(1)
        if rate.frame_period is not None:
            stats["frame_period"] = torch.tensor(rate.frame_period)
        else:
            stats["lam"] = torch.tensor(rate.lam)
        stats["length_ratio"] = ratio.detach()
        stats["achieved_period"] = (INPUT_PERIOD_MS / ratio.clamp_min(1e-6)).detach()
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, speech.new_tensor(speech.shape[0])),
                                               loss.device)
        return loss, stats, weight

    @staticmethod
    def _align(target: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Fit teacher frames (B, T_t, D) to the student's T; CNNs may differ by a frame."""
        diff = target.shape[1] - num_frames
        if abs(diff) > 2:
            raise ValueError(
                f"teacher gives {target.shape[1]} frames where the student's CNN gives "
                f"{num_frames}: both must run at {INPUT_PERIOD_MS:g} ms (total stride 320 "
                "at 16 kHz)"
            )
        if diff >= 0:
            return target[:, :num_frames]
        return torch.nn.functional.pad(target, (0, 0, 0, -diff))

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                      **kwargs) -> Dict[str, torch.Tensor]:
        # The student normalises inside; there are no feature statistics to collect.
        return {}
