"""espnet3's ASR system with the model file ESPnet2's inference expects.

espnet3 trains with Lightning, which keeps checkpoints named after their epoch and step
(``epoch3_step120_valid.loss.ckpt``). Its top-K averaging callback runs before Lightning's
checkpoint callbacks at the end of each validation, so the averaged ``.pth`` it writes
never includes the last epoch (and is missing after a 1-epoch run). `OFAASRSystem`
therefore writes, after training, ``<exp_dir>/<monitor>.best.pth`` (ESPnet2's name, e.g.
``valid.loss.best.pth``): the weights of the best checkpoint that Lightning itself
recorded for that monitor. ESPnet's ``Speech2Text`` and `espnet_ofa.bin.pack_model` read
it like any ESPnet2 model file.
"""

from __future__ import annotations

import os
from pathlib import Path


import torch

from espnet3.systems.esp2_asr.system import ASRSystem
from espnet_ofa.fileio import PathLike

_LAST = "last.ckpt"


def best_checkpoint(exp_dir: PathLike, monitor: str = "valid/loss") -> Path:
    """The best checkpoint Lightning recorded for ``monitor`` in ``exp_dir/last.ckpt``.

    Raises ``FileNotFoundError`` (training has not run, or no checkpoint tracks
    ``monitor``: add it to ``best_model_criterion``).
    """
    last = Path(exp_dir) / _LAST
    if not last.is_file():
        raise FileNotFoundError(f"{last}: no Lightning checkpoint; run the train stage first")
    state = torch.load(last, map_location="cpu", weights_only=False)
    for name, callback in (state.get("callbacks") or {}).items():
        if name.startswith("ModelCheckpoint") and callback.get("monitor") == monitor:
            best = callback.get("best_model_path")
            if best and Path(best).is_file():
                return Path(best)
            # Lightning records absolute paths: the experiment may have been moved.
            moved = Path(exp_dir) / Path(best or "").name
            if best and moved.is_file():
                return moved
            raise FileNotFoundError(f"{last}: the best checkpoint for {monitor!r}, {best!r}, "
                                    "is missing; rerun the train stage")
    raise FileNotFoundError(f"{last}: no checkpoint tracks {monitor!r}; add it to "
                            "best_model_criterion in the training config")


def export_best_model(exp_dir: PathLike, monitor: str = "valid/loss") -> Path:
    """Write ``exp_dir/<monitor with / as .>.best.pth``: the ESPnet model's state dict from
    the best checkpoint (atomically: a reader never sees half a file). Returns its path."""
    state = torch.load(best_checkpoint(exp_dir, monitor), map_location="cpu",
                       weights_only=False)["state_dict"]
    out = Path(exp_dir) / f"{monitor.replace('/', '.')}.best.pth"
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    return out


class OFAASRSystem(ASRSystem):
    """`ASRSystem` whose train stage ends by writing ``valid.loss.best.pth`` (module doc)."""

    monitor = "valid/loss"

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        export_best_model(self.training_config.exp_dir, self.monitor)
        return result


__all__ = ["OFAASRSystem", "best_checkpoint", "export_best_model"]
