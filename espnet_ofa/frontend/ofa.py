"""``frontend: ofa``: an OFA SSL model as an ESPnet frontend, at a frame period you choose.

    waveform (B, N) at 16 kHz
      -> OFA student (CNN -> CIF at the frame period -> Transformer)   [frozen or fine-tuned]
      -> one hidden state (``layer: k``) or a learned weighted sum (``layer: -1``)
      -> (B, T', D) features and their exact lengths T'

Each utterance of T 20 ms frames gives ``round(T * 20 / frame_period)`` frames, so the
encoder on top runs on a sequence ``frame_period / 20`` times shorter. ESPnet trusts the
returned lengths (CTC, attention masks), and they are exact: the padded length is the
longest one.

The rate is chosen by ``frame_period`` (ms) or ``lam`` (the paper's lambda), changed on a
trained model with `OFAFrontend.set_rate` (or the ``ESPNET_OFA_FRAME_PERIOD`` /
``ESPNET_OFA_LAM`` environment variables, read only by models built for decoding: see
`decoding_build`), or learnt with the task
(``learnable_rate: true``, see `espnet_ofa.frontend.learnable_rate`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from torch import nn

from espnet_ofa.compression import INPUT_PERIOD_MS, Rate
from espnet_ofa.frontend.layers import WeightedLayerSum, check_layer
from espnet_ofa.frontend.learnable_rate import DEFAULT_DELTA, LearnableRate, check_rate_range
from espnet_ofa.frontend.pooling import average_pool, pool_factor
from espnet_ofa.frontend.rate_sampling import SampledRate, build_sampled_rate
from espnet_ofa.models.pretrained import CheckpointError, load_student
from espnet_ofa.models.student import SAMPLE_RATE, OFAStudent

logger = logging.getLogger(__name__)

# Decoding-time rate override: ESPnet's *_inference take no model-config overrides, so a
# trained model's rate is changed through the environment of the decoding process.
ENV_FRAME_PERIOD = "ESPNET_OFA_FRAME_PERIOD"
ENV_LAM = "ESPNET_OFA_LAM"

# True while a model is built for decoding. The override must never reach a training
# process: ESPnet validates in eval mode, and best-model selection would then run at a
# period the model is not trained at. Training builds with ``Task.main -> build_model``;
# ESPnet's inference classes (Speech2Text, Speech2Understand, ...) with
# ``Task.build_model_from_file``, which `espnet_ofa.registration` runs inside
# `decoding_build`. A flag set by the entry point, not a guess from the module's mode.
_DECODING_BUILD: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "espnet_ofa_decoding_build", default=False
)


@contextlib.contextmanager
def decoding_build():
    """OFA frontends built inside this block obey the environment's rate override.

    ESPnet's ``build_model_from_file`` runs in it (see `espnet_ofa.registration`); use it
    around your own model construction for decoding scripts, or call `OFAFrontend.set_rate`.
    """
    token = _DECODING_BUILD.set(True)
    try:
        yield
    finally:
        _DECODING_BUILD.reset(token)

def resolve_model(model: Optional[Union[str, os.PathLike]]) -> Path:
    """``frontend_conf.model`` -> the local OFA checkpoint (.pth) it names.

    A .pth/.pt path is used as it is (its config.yaml beside it); anything else is a packed
    model: a .zip path, a URL, a name in a local zoo (``$ESPNET_OFA_ZOO``) or the package's
    table, or a Hugging Face id, which `espnet_ofa.zoo` downloads, verifies and unpacks.

    Raises:
        CheckpointError: missing value or checkpoint file.
        espnet_ofa.zoo.ZooError: a packed model that cannot be found, fetched or read.
    """
    if model is None or str(model).strip() == "":
        raise CheckpointError(
            "frontend_conf.model is required: the path of an OFA checkpoint, e.g. "
            "exp/ofa/valid.loss.best.pth from ofa_ssl_train (its config.yaml must be beside it), "
            "or a packed OFA model (.zip, zoo name)"
        )
    value = os.fspath(model)
    path = Path(value).expanduser()
    if path.suffix in (".pth", ".pt"):
        if path.is_file():
            return path
        raise CheckpointError(
            f"OFA checkpoint {value!r} does not exist (relative paths are relative to "
            f"{os.getcwd()}); train one with ofa_ssl_train (egs2/*/ssl1/run.sh) or fix "
            "frontend_conf.model"
        )
    from espnet_ofa.zoo import resolve_ofa_checkpoint

    return resolve_ofa_checkpoint(value)


def parse_fs(fs: Union[int, float, str]) -> int:
    """ESPnet's ``fs`` (16000 or "16k") -> Hz; anything but 16 kHz is an error naming the fix."""
    value = fs
    if isinstance(fs, str):
        import humanfriendly

        try:
            value = humanfriendly.parse_size(fs)
        except humanfriendly.InvalidSize as err:
            raise ValueError(f"frontend_conf.fs={fs!r} is not a sample rate (use 16k)") from err
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != SAMPLE_RATE:
        raise ValueError(
            f"frontend_conf.fs={fs!r}: OFA models read {SAMPLE_RATE // 1000} kHz audio. "
            "Resample the data to 16 kHz (e.g. `sox in.wav -r 16000 out.wav`, or "
            "espnet_ofa.data.load_audio(path, target_sr=16000) when preparing wav.scp) "
            "and set fs: 16k"
        )
    return int(value)


def _number_from_env(name: str) -> Optional[float]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; unset it or give e.g. {name}=40")


def rate_from_env() -> Optional[Rate]:
    """The decoding-time override from ``ESPNET_OFA_FRAME_PERIOD`` / ``ESPNET_OFA_LAM``."""
    period, lam = _number_from_env(ENV_FRAME_PERIOD), _number_from_env(ENV_LAM)
    if period is None and lam is None:
        return None
    try:
        return Rate(frame_period=period, lam=lam)
    except ValueError as err:
        raise ValueError(f"{ENV_FRAME_PERIOD}/{ENV_LAM}: {err}") from None


_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                    "float16": torch.float16, "fp16": torch.float16}


def _autocast_dtype(autocast: Optional[str]) -> Optional[torch.dtype]:
    """``frontend_conf.autocast`` -> the dtype, or None for off (None, "float32")."""
    if autocast is None or autocast in ("float32", "fp32", "none"):
        return None
    if autocast not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"frontend_conf.autocast={autocast!r}: use bfloat16 (GPUs), float16, or null for off")
    return _AUTOCAST_DTYPES[autocast]


def _prepare_student(student: OFAStudent, layer: int) -> OFAStudent:
    """Drop what a frontend never runs: unused parameters would also break DDP.

    The distillation heads go, and with ``layer = k`` every Transformer layer above k
    (they would cost compute and get no gradient).
    """
    student.heads = nn.ModuleList()
    if layer >= 0:
        student.transformer.layers = student.transformer.layers[:layer]
    return student


class OFAFrontend(AbsFrontend):
    """An OFA SSL model as an ESPnet frontend (``frontend: ofa``).

    Args:
        fs: sample rate of the data; must be 16 kHz (16000 or "16k").
        model: the OFA checkpoint (.pth written by ``ofa_ssl_train``, config.yaml beside it).
        frame_period: output frame period in ms, within the model's trained range.
        lam: the paper's lambda in [0, 2], instead of ``frame_period``.
        learnable_rate: learn the frame period with the task (starts at ``frame_period``,
            or mid-range). Needs the model-level hook that ``build_model`` of the ESPnet
            tasks installs (see `espnet_ofa.frontend.espnet_hooks`).
        rate_range: [low, high] ms a learnable period stays in; by default the range
            the OFA model was trained for.
        rate_cost: weight of the compute penalty ``rate_cost * 20 / period``.
        layer: -1 for a learned softmax-weighted sum of all hidden states, or k for hidden
            state k only (0 = the Transformer's input, num_layers = its last layer).
        freeze: keep the SSL weights frozen (False: fine-tune them with the task).
        compile: run the OFA model's front and Transformer through ``torch.compile``
            (dynamic shapes: no recompilation per utterance length; eager with a warning
            where compiling is unavailable). See `OFAStudent.enable_compile`.
        autocast: run the OFA model under ``torch.autocast`` in this dtype ("bfloat16"
            for GPUs; "float16"); its features are returned in float32. None: off.
        pooled_period: the pooled baseline: run the OFA model at ``frame_period`` (20 ms)
            and average-pool its features to this period, an integer multiple of it (see
            `espnet_ofa.frontend.pooling`). The period is then fixed: no ``set_rate``.
        rate_sampling: ``{low, high[, seed, distribution]}``: train at a period drawn per
            batch in [low, high] ms, ``uniform`` (the default) or ``log_uniform`` (see
            `espnet_ofa.frontend.rate_sampling`); validation and decoding run at
            ``frame_period`` unless set otherwise. ``seed`` defaults to torch's initial
            seed (ESPnet's ``--seed``).
        probe_jitter: the learnt rate's control: train at the fixed ``frame_period`` with
            the learnt rate's two probes ``frame_period * (1 +- probe_jitter)`` per step and
            their mean loss, without learning the period.

    Shapes: ``forward((B, N) waveforms, (B,) lengths) -> ((B, T', D), (B,) lengths)``.
    """

    def __init__(
        self,
        fs: Union[int, str] = SAMPLE_RATE,
        model: Optional[str] = None,
        frame_period: Optional[float] = 60.0,
        lam: Optional[float] = None,
        learnable_rate: bool = False,
        rate_range: Optional[Sequence[float]] = None,
        rate_cost: float = 0.0,
        layer: int = -1,
        freeze: bool = True,
        compile: bool = False,
        autocast: Optional[str] = None,
        pooled_period: Optional[float] = None,
        rate_sampling: Optional[Dict] = None,
        probe_jitter: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.fs = parse_fs(fs)
        frame_period = ssl_frame_period(frame_period, lam, pooled_period)
        checkpoint = resolve_model(model)
        self.model_path = str(checkpoint)
        student = load_student(checkpoint)
        num_hidden = student.num_hidden
        self.layer = check_layer(layer, num_hidden)
        self.student = _prepare_student(student, self.layer)
        self.layer_mix = WeightedLayerSum(num_hidden) if self.layer == -1 else None
        self.freeze = bool(freeze)
        self._apply_freeze()
        self.autocast_dtype = _autocast_dtype(autocast)
        if compile:
            self.student.enable_compile()

        self.rate: Optional[LearnableRate] = None
        self._configured: Optional[Rate] = None
        if learnable_rate:
            self.rate = self._build_learnable_rate(frame_period, lam, rate_range, rate_cost)
        else:
            if rate_cost:
                raise ValueError(
                    f"rate_cost={rate_cost} only applies to a learnable rate; set "
                    "learnable_rate: true or remove rate_cost"
                )
            self._configured = self._checked_rate(frame_period, lam, "frontend_conf")
        self._build_rate_variants(pooled_period, rate_sampling, probe_jitter, learnable_rate)
        # set_rate()'s choice, and the environment's: both only change the rate the model
        # runs at, never what it has learnt or what its config says.
        self._override: Optional[Rate] = None
        self._env_rate: Optional[Rate] = None
        # Checked even where it is then ignored: a malformed or out-of-range value would
        # otherwise surface only in the decoding that follows training.
        env_rate = rate_from_env()
        if env_rate is not None:
            env_rate = self._checked_rate(env_rate.frame_period, env_rate.lam,
                                          f"{ENV_FRAME_PERIOD}/{ENV_LAM}")
        if _DECODING_BUILD.get():
            if env_rate is not None:
                self._env_rate = env_rate
                logger.info("OFA frontend: decoding (eval mode) runs at %s from the "
                            "environment", self._env_rate)
        elif env_rate is not None:
            logger.warning(
                "OFA frontend: %s/%s ignored: this model is not built for decoding (training "
                "and its validation run at the configured rate; see decoding_build)",
                ENV_FRAME_PERIOD, ENV_LAM,
            )
        # The period of the current antithetic probe; set by the model-level hook.
        self._probe: Optional[float] = None
        self._warned_no_hook = False

    # ------------------------------------------------------------------ construction
    def _checked_rate(self, frame_period: Optional[float], lam: Optional[float],
                      source: str) -> Rate:
        """The `Rate` asked for, checked against this model; errors name ``source``."""
        try:
            return self.student.check_rate(Rate(frame_period=frame_period, lam=lam))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def _build_learnable_rate(self, frame_period, lam, rate_range, rate_cost) -> LearnableRate:
        if lam is not None:
            raise ValueError(
                "learnable_rate learns a frame period, not lam: set lam: null and give the "
                "starting period as frame_period (or leave it null for mid-range)"
            )
        if self.student.config.compression != "cif":
            raise ValueError("learnable_rate needs a CIF model (student compression: cif)")
        if rate_range is None:
            rate_range = self.student.config.frame_period_range
        trained = self.student.config.frame_period_range
        low, high = check_rate_range(rate_range, trained)
        init = (low + high) / 2 if frame_period is None else float(frame_period)
        if not low <= init <= high:
            raise ValueError(
                f"frame_period {init:g} ms (the learnable rate's start) is outside "
                f"rate_range [{low:g}, {high:g}]; choose a start inside it"
            )
        return LearnableRate(init, low, high, cost=float(rate_cost), limits=trained)

    def _build_rate_variants(self, pooled_period, rate_sampling, probe_jitter,
                             learnable_rate: bool) -> None:
        """The pooled baseline, the sampled period and the jitter control (one at most)."""
        chosen = [name for name, value in (("pooled_period", pooled_period),
                                           ("rate_sampling", rate_sampling),
                                           ("probe_jitter", probe_jitter),
                                           ("learnable_rate", learnable_rate or None))
                  if value is not None]
        if len(chosen) > 1:
            raise ValueError(f"frontend_conf: {' and '.join(chosen)} exclude each other; "
                             "set one of them (the others null/false)")
        self.pool: Optional[int] = None
        self.pooled_period: Optional[float] = None
        self.sampling: Optional[SampledRate] = None
        if chosen and self._configured is not None and self._configured.frame_period is None:
            raise ValueError(f"frontend_conf.{chosen[0]} needs frame_period (ms), not lam")
        period = self._configured.frame_period if self._configured is not None else None
        if pooled_period is not None:
            self.pool = pool_factor(pooled_period, period)
            self.pooled_period = float(pooled_period)
            if _DECODING_BUILD.get() and rate_from_env() is not None:
                logger.warning("OFA frontend: %s/%s ignored: a pooled baseline runs at its "
                               "fixed %g ms", ENV_FRAME_PERIOD, ENV_LAM, self.pooled_period)
        elif rate_sampling is not None:
            self.sampling = build_sampled_rate(rate_sampling,
                                               self.student.config.frame_period_range,
                                               default_seed=torch.initial_seed())
        elif probe_jitter is not None:
            # true: the learnt rate's own jitter (its central difference's step)
            jitter = DEFAULT_DELTA if probe_jitter is True else probe_jitter
            if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not (
                    0.0 < jitter < 0.5):
                raise ValueError(f"probe_jitter must be true (the learnt rate's +-"
                                 f"{DEFAULT_DELTA:g}) or a number in (0, 0.5), got "
                                 f"{probe_jitter!r}")
            jitter = float(jitter)
            limits = self.student.config.frame_period_range
            self.rate = LearnableRate(period, limits[0], limits[1], limits=limits,
                                      delta=jitter, learn=False)
            self._configured = None

    def _apply_freeze(self) -> None:
        for p in self.student.parameters():
            p.requires_grad_(not self.freeze)
        if self.freeze:
            self.student.eval()

    def train(self, mode: bool = True) -> "OFAFrontend":
        super().train(mode)
        if self.freeze:
            # A frozen SSL model is a fixed feature extractor: no dropout noise in it.
            self.student.eval()
        return self

    def reload_pretrained_parameters(self) -> None:
        """Restore the SSL weights from the checkpoint after ESPnet's ``init:`` reset them.

        ESPnet's `initialize` re-draws every matrix of the model and resets norms; this puts
        the OFA weights back and restarts the layer weights and a learnable rate.
        """
        fresh = _prepare_student(load_student(self.model_path), self.layer)
        self.student.load_state_dict(fresh.state_dict())
        if self.layer_mix is not None:
            self.layer_mix.reset_parameters()
        if self.rate is not None:
            self.rate.reset()
        self._apply_freeze()
        logger.info("OFA frontend: pretrained weights reloaded from %s", self.model_path)

    # ------------------------------------------------------------------ rate control
    def set_rate(self, frame_period: Optional[float] = None, lam: Optional[float] = None) -> None:
        """Run at ``frame_period`` ms (or ``lam``) from now on, without reloading.

        With neither, go back to the configured rate (or the learnt one). On a learnable
        rate the choice applies in eval mode only: training keeps learning the period.
        """
        if frame_period is None and lam is None:
            self._override = None
            return
        if self.pool is not None:
            raise ValueError(
                f"a pooled baseline runs its OFA model at {self._configured.frame_period:g} ms "
                f"and pools to {self.pooled_period:g} ms: its period is fixed (train another "
                "one with another pooled_period)")
        self._override = self._checked_rate(frame_period, lam, "set_rate")

    def current_rate(self) -> Rate:
        """The rate the next forward runs at."""
        if self.pool is not None:
            return self._configured  # the SSL model's; the pool's period is fixed
        if self.rate is not None:
            if self.training:
                if self._probe is not None:
                    return Rate(frame_period=self._probe)
                return Rate(frame_period=self.rate.value)
            chosen = self._override or self._env_rate
            return chosen if chosen is not None else Rate(frame_period=self.rate.value)
        if self._override is not None:
            return self._override
        if not self.training and self._env_rate is not None:
            return self._env_rate
        return self._configured

    def set_probe(self, frame_period: Optional[float]) -> None:
        """Used by the model-level hook: run the next training forward at this period."""
        self._probe = frame_period

    def extra_stats(self) -> Dict[str, float]:
        """Values to report each step: the frame period (or lam) in use."""
        if self.pool is not None:
            return {"frame_period": self.pooled_period}
        if self.sampling is not None and self.training and self.sampling.last is not None:
            return {"frame_period": self.sampling.last}
        if self.rate is not None and self.training:
            return {"frame_period": self.rate.value}
        rate = self.current_rate()
        return {"frame_period": rate.frame_period} if rate.frame_period is not None else {
            "lam": rate.lam}

    # ------------------------------------------------------------------ forward
    def output_size(self) -> int:
        return self.student.config.embed_dim

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N) 16 kHz waveforms, (B,) samples -> (B, T', D) features, (B,) frames.

        Rows past each length are zero; ``T' = max(lengths)``.
        """
        if (self.rate is not None and self.training and self._probe is None
                and not self._warned_no_hook and torch.is_grad_enabled()):
            self._warned_no_hook = True
            warnings.warn(
                "learnable_rate: this model has no rate-learning hook, so the frame period "
                "is not being learnt; build the model with an ESPnet task (asr/slu/st "
                "build_model) or call espnet_ofa.frontend.attach_rate_learning(model)",
                RuntimeWarning, stacklevel=2,
            )
        rate = self.current_rate()
        if self.sampling is not None and self.training and torch.is_grad_enabled():
            rate = self.sampling.draw()
        # A frozen model needs no graph: the rate's gradient comes from loss values.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            with torch.autocast(input.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                out = self.student(input, input_lengths, frame_period=rate.frame_period,
                                   lam=rate.lam)
        if self.autocast_dtype is not None:
            out.hidden = [h.float() for h in out.hidden]  # ESPnet's encoders run in float32
        if self.layer_mix is not None:
            feats = self.layer_mix(out.hidden)
        else:
            feats = out.hidden[self.layer]
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < out.lengths[:, None]
        feats = feats.masked_fill(~valid[..., None], 0.0)
        if self.pool is not None:
            return average_pool(feats, out.lengths, self.pool)
        return feats, out.lengths


def ssl_frame_period(frame_period: Optional[float], lam: Optional[float],
                     pooled_period: Optional[float]) -> Optional[float]:
    """The period the SSL model runs at: ``frame_period``, except that the pooled rival
    given no period (nor ``lam``) runs it at its own 20 ms and pools after it."""
    if pooled_period is not None and frame_period is None and lam is None:
        return INPUT_PERIOD_MS
    return frame_period


def ofa_options(frontend_conf: Dict[str, Any]) -> Dict[str, Any]:
    """``frontend_conf`` of ``frontend: ofa`` with `OFAFrontend`'s defaults filled in; an
    option it does not take is an error naming it."""
    signature = inspect.signature(OFAFrontend)
    unknown = sorted(set(frontend_conf) - set(signature.parameters))
    if unknown:
        raise ValueError(f"frontend_conf: unknown option(s) {', '.join(unknown)} for frontend: "
                         f"ofa (it takes {', '.join(signature.parameters)})")
    bound = signature.bind(**frontend_conf)
    bound.apply_defaults()
    return dict(bound.arguments)


def learnt_period(train_config: Union[str, os.PathLike],
                  model_file: Union[str, os.PathLike]) -> float:
    """The frame period (ms) that a trained ``learnable_rate`` model learnt.

    Rebuilds the experiment's frontend from its ``config.yaml`` (so the rate's range is
    the one it trained with) and loads the learnt rate from ``model_file``.

    Raises:
        FileNotFoundError: no config or model file.
        ValueError: the experiment does not learn its period.
    """
    import yaml

    for path in (train_config, model_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} not found: train the learnt-rate model first")
    conf = yaml.safe_load(Path(train_config).read_text(encoding="utf-8")) or {}
    fconf = dict(conf.get("frontend_conf") or {})
    if conf.get("frontend") != "ofa" or not fconf.get("learnable_rate"):
        raise ValueError(f"{train_config}: not a learnt-rate model (frontend: ofa with "
                         "learnable_rate: true)")
    frontend = OFAFrontend(**fconf)
    prefix = "frontend.rate."
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    rate_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not rate_state:
        raise ValueError(f"{model_file} holds no learnt rate ({prefix}*); is it the model "
                         f"of {train_config}?")
    frontend.rate.load_state_dict(rate_state)
    return frontend.rate.value
