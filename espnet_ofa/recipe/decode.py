"""Decode test sets at several OFA frame periods in one process (stage 12).

ESPnet's ``*_inference`` CLIs load the model once per call and import ESPnet each time
(~7 s); one call per period and test set would dominate a small recipe. Here the model is
loaded once with ESPnet's own inference classes (``Speech2Text`` for asr/st,
``Speech2Understand`` for slu) and the OFA frontend's run-time setter
(``frontend.set_rate(frame_period=p)``) switches the period between passes; a model that
learnt its rate (``learnable_rate: true``) is decoded at its learnt period. Baselines are
decoded as they were trained: a model on a fixed-rate student (``compression: fixed``) at
its own period only, and so are the pooled rival (``pooled_period``: its SSL model runs at
20 ms whatever the period), the teacher pooled the same way (``frontend: ssl_teacher``) and
the jitter control (``probe_jitter``, at the period it
copied); a model without the OFA frontend (e.g. ESPnet's log-mel) once, at its
features' own period (rate tag ``native``). A model trained with ``rate_sampling`` is
decoded at every period asked for.

Per rate and test set it writes ``<out_dir>/<rate tag>/<test set>/``:

- ``text``: ``utt hypothesis`` (Kaldi text, sorted), ``token``: the tokens;
- ``info.json``: the requested period (or ``learned``), the achieved average period
  (measured from the frontend's output lengths), MACs per second of audio of the part
  that depends on the period (frontend + encoder, counted with ``torch.utils.flop_counter``
  on the first utterances), and the real-time factor (decoding time / audio duration, timed
  by `espnet_ofa.system_speed.timed_decode`, with its frontend and encoder parts).

``num_splits``/``split`` decode a slice of each test set (for ``inference_nj`` jobs);
:func:`merge_splits` then joins the slices.

torch and ESPnet are imported by the functions that decode (:func:`decode_periods`): the
merge and the resume check (:func:`is_decoded`) run as processes of their own, several per
recipe run, and start in a fraction of a second without them.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import yaml

from espnet_ofa.constants import INPUT_PERIOD_MS
from espnet_ofa.data.audio import num_frames
from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table, validate_data_dir
from espnet_ofa.espnet_tasks import get_task
from espnet_ofa.fileio import PathLike, file_sha1
from espnet_ofa.recipe.experiments import JITTER, POOLED, SAMPLED, TEACHER_POOLED
from espnet_ofa.registration import FRONTEND_NAME, TEACHER_FRONTEND_NAME
from espnet_ofa.frontend.lookup import find_ofa_frontend

logger = logging.getLogger(__name__)

LEARNED = "learned"
NATIVE = "native"  # a model without the OFA frontend: its features' own period


def rate_tag(period: Optional[float], native: bool = False) -> str:
    """Directory name of a rate: ``p40`` for 40 ms, ``p42.5``; ``learned`` for None
    (``native`` for a model whose frontend has no rate)."""
    if native:
        return NATIVE
    return LEARNED if period is None else f"p{period:g}"


# What one pass counts, summed over utterances (and over split jobs by `merge_splits`).
COUNTS = ("num_utts", "audio_seconds", "decode_seconds", "frontend_seconds", "encoder_seconds",
          "frames_20ms", "frames_out", "macs", "macs_audio_seconds")


def derived(counts: dict) -> dict:
    """The rates that follow from a pass's `COUNTS`: achieved period, RTF, GMACs/s."""
    def ratio(num: float, den: float, scale: float = 1.0) -> Optional[float]:
        return num / den * scale if den else None

    return {"achieved_period": ratio(INPUT_PERIOD_MS * counts["frames_20ms"], counts["frames_out"]),
            "rtf": ratio(counts["decode_seconds"], counts["audio_seconds"]),
            "gmacs_per_second": ratio(counts["macs"], counts["macs_audio_seconds"], 1e-9)}


@dataclass
class RateResult:
    """What one pass (rate x test set) measured."""

    tag: str
    frame_period: Optional[float]  # requested; None = the learnt one
    num_utts: int = 0
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0
    frontend_seconds: float = 0.0  # parts of decode_seconds (espnet_ofa.system_speed)
    encoder_seconds: float = 0.0
    frames_20ms: int = 0
    frames_out: int = 0
    macs: int = 0
    macs_audio_seconds: float = 0.0

    def info(self, learned_period: Optional[float]) -> dict:
        counts = {name: getattr(self, name) for name in COUNTS}
        rates = derived(counts)
        native = self.tag == NATIVE
        return {
            "rate": self.tag,
            "frame_period": (rates["achieved_period"] if native else self.frame_period
                             if self.frame_period is not None else learned_period),
            "learned": self.frame_period is None and not native,
            **counts, **rates,
        }


# The inference YAML's own option (the rest go to ESPnet's class): best-path decoding of a
# CTC-only model instead of the prefix beam search (`espnet_ofa.inference`).
CTC_GREEDY = "ctc_greedy"


def _load_inference(task: str, train_config: PathLike, model_file: PathLike, device: str,
                    inference_config: Optional[PathLike] = None, **overrides):
    """ESPnet's inference object for ``task``, with the YAML's options that it accepts
    (and ``ctc_greedy: true``: best-path decoding of a CTC-only model)."""
    import espnet_ofa
    from espnet_ofa.inference import use_ctc_greedy_search

    espnet_ofa.register()  # the import hook normally did it; harmless otherwise
    spec = get_task(task)
    cls, cls_name = spec.inference_cls(), spec.inference_class
    conf = {}
    if inference_config:
        conf = yaml.safe_load(Path(inference_config).read_text(encoding="utf-8")) or {}
    conf.update({k: v for k, v in overrides.items() if v is not None})
    ctc_greedy = conf.pop(CTC_GREEDY, False)
    if not isinstance(ctc_greedy, bool):
        raise ValueError(f"{inference_config}: {CTC_GREEDY} must be true or false, "
                         f"got {ctc_greedy!r}")
    accepted = set(inspect.signature(cls.__init__).parameters)
    unknown = sorted(set(conf) - accepted)
    if unknown:
        raise ValueError(f"{inference_config}: {cls_name} has no option(s) {unknown}")
    speech2x = cls(**{spec.config_key: str(train_config), spec.model_key: str(model_file),
                      "device": device, **dict(spec.inference_kwargs), **conf})
    if ctc_greedy:
        use_ctc_greedy_search(speech2x, task)
    return speech2x


def model_description(train_config: PathLike) -> dict:
    """What results need to tell the models apart: the frontend, its SSL checkpoint and the
    seed, from the experiment's config.yaml (ESPnet writes every option there)."""
    conf = yaml.safe_load(Path(train_config).read_text(encoding="utf-8")) or {}
    fconf = conf.get("frontend_conf") or {}
    ssl_model = {FRONTEND_NAME: fconf.get("model"), TEACHER_FRONTEND_NAME: fconf.get("source")}
    return {"frontend": conf.get("frontend") or "default",
            "ssl_model": ssl_model.get(conf.get("frontend")),
            "seed": conf.get("seed", 0), "variant": variant(conf)}


def variant(conf: dict) -> Optional[str]:
    """Which downstream variant a training config is: the pooled rival, a sampled period,
    a jitter control, the pooled teacher (the kinds of `espnet_ofa.recipe.experiments`), or
    None."""
    fconf = conf.get("frontend_conf") or {}
    if conf.get("frontend") == TEACHER_FRONTEND_NAME and fconf.get("pooled_period") is not None:
        return TEACHER_POOLED
    if conf.get("frontend") != "ofa":
        return None
    if fconf.get("pooled_period") is not None:
        return POOLED
    if fconf.get("rate_sampling"):
        return SAMPLED
    if fconf.get("probe_jitter") and not fconf.get("learnable_rate"):
        return JITTER
    return None


def train_frame_period(train_config: PathLike) -> Optional[float]:
    """The fixed frame period an experiment was trained at (its config.yaml's
    ``frontend_conf.frame_period``, or ``pooled_period`` for the pooled rival); None for a
    learnt or sampled rate or a non-OFA frontend (but the pooled teacher's ``pooled_period``)."""
    conf = yaml.safe_load(Path(train_config).read_text(encoding="utf-8")) or {}
    fconf = conf.get("frontend_conf") or {}
    if variant(conf) == TEACHER_POOLED:
        return float(fconf["pooled_period"])
    if conf.get("frontend") != "ofa" or fconf.get("learnable_rate") or fconf.get("rate_sampling"):
        return None
    if fconf.get("pooled_period") is not None:
        return float(fconf["pooled_period"])
    period = fconf.get("frame_period")
    return None if period is None else float(period)


def own_period_only(variant: Optional[str], trained_at: Optional[float],
                    own_period: bool = False) -> bool:
    """Whether a downstream is decoded at the period it was trained at only: the pooled
    rivals (on the OFA model and on the teacher) and the jitter control always, a downstream
    trained at one fixed period when ``own_period`` asks; never a sampled or learnt rate
    (``trained_at`` None)."""
    if variant in (POOLED, TEACHER_POOLED, JITTER):
        return True
    return own_period and variant is None and trained_at is not None


def decode_rates(
    periods: Sequence[float], learned: Union[bool, str] = "auto", *, native: bool = False,
    compression: Optional[str] = "cif", has_rate: bool = False,
    trained_at: Optional[float] = None, name: str = "the model",
    ssl_period_range: Optional[Sequence[float]] = None, own_period_only: bool = False,
) -> List[Optional[float]]:
    """The rates to decode a model at (None: its learnt period, or once for ``native``).

    Baselines are decoded as they were trained: a student pretrained at one period (a
    fixed-rate student, ``compression: fixed``, or a CIF student whose ``ssl_period_range``
    is one point) only at its own period ``trained_at`` (running it at another is not a
    model anyone trained), a model without the OFA frontend (``native``) once, whatever
    ``periods`` asks; ``own_period_only`` (the pooled rival, a jitter control) like a
    student pretrained at one period. ``learned``: see :func:`decode_periods`.
    """
    if isinstance(learned, str) and learned not in ("auto", "true", "false"):
        raise ValueError(f"learned must be auto, true or false, got {learned!r}")
    wants_learned = learned is True or learned == "true"
    if (native or not has_rate) and wants_learned:
        raise ValueError(f"{name}: no learnt rate (the frontend is not 'ofa' with "
                         "learnable_rate: true); decode it at --frame_periods instead")
    if native:
        return [None]
    one_period = ssl_period_range is not None and float(ssl_period_range[0]) == float(
        ssl_period_range[1])
    if compression == "fixed" or one_period or own_period_only:
        if trained_at is None:
            raise ValueError(f"{name}: a student pretrained at one period without a "
                             "frame_period in its config; set frontend_conf.frame_period")
        if [float(p) for p in periods] not in ([], [trained_at]):
            logger.info("%s: decoded at its own period (%g ms) only", name, trained_at)
        return [float(trained_at)]
    if learned == "auto":
        rates: List[Optional[float]] = [] if has_rate else [float(p) for p in periods]
        learned = has_rate
    else:
        rates = [float(p) for p in periods]
        learned = wants_learned
    if learned:
        rates.append(None)
    if not rates:
        raise ValueError("nothing to decode: give frame periods and/or learned")
    return rates


def _slice(items: List[str], num_splits: int, split: int) -> List[str]:
    if not 1 <= split <= num_splits:
        raise ValueError(f"split must be in 1..{num_splits}, got {split}")
    return items[split - 1::num_splits]


def decode_periods(
    task: str,
    train_config: PathLike,
    model_file: PathLike,
    data_dirs: Sequence[PathLike],
    out_dir: PathLike,
    periods: Sequence[float] = (),
    learned: Union[bool, str] = "auto",
    inference_config: Optional[PathLike] = None,
    device: str = "cpu",
    num_splits: int = 1,
    split: int = 1,
    macs_utts: int = 5,
    progress: bool = True,
    own_period: bool = False,
) -> List[dict]:
    """Decode every data dir at every rate; returns the info dicts written.

    Args:
        periods: frame periods in ms (each within the OFA model's range).
        learned: True = also decode at the model's learnt period (needs
            ``learnable_rate: true``); "auto" = a model with a learnt rate at that rate
            only, any other at ``periods``; False = ``periods`` only.
        macs_utts: utterances (per rate and set) whose MACs are counted (0 = none).
        own_period: decode a downstream trained at one fixed period at that period only
            (not switched to ``periods`` at run time); a sampled or learnt rate is
            unaffected.
    """
    for option, path in (("train_config", train_config), ("model_file", model_file)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{option} {path} not found: train the model first (the "
                                    "recipe's training stage) or fix the path")
    # Every set is checked before anything is decoded.
    sets = {Path(d): _split_utterances(Path(d), num_splits, split) for d in data_dirs}
    s2t = _load_inference(task, train_config, model_file, device, inference_config)
    model = getattr(s2t, get_task(task).model_attribute)
    model.eval()
    frontend = find_ofa_frontend(model)
    trained_at = train_frame_period(train_config)
    described = {**model_description(train_config),
                 "compression": (frontend.student.config.compression
                                 if frontend is not None else None),
                 "ssl_period_range": (list(frontend.student.config.frame_period_range)
                                      if frontend is not None else None)}
    # The pooled teacher has no OFA frontend, but a period of its own (its pool's).
    native = frontend is None and described["variant"] != TEACHER_POOLED
    rates = decode_rates(periods, learned, native=native, compression=described["compression"],
                         has_rate=(frontend is not None and frontend.rate is not None
                                   and frontend.rate.learn),
                         trained_at=trained_at, name=str(model_file),
                         ssl_period_range=described["ssl_period_range"],
                         own_period_only=own_period_only(described["variant"], trained_at,
                                                         own_period))
    learned_period = float(frontend.rate.value) if not native and None in rates else None
    about = {"model_file": str(model_file), "train_frame_period": trained_at, **described}

    results = []
    # Any ESPnet frontend returns (feats, lengths): the achieved period of log-mel too.
    with _FrameCounter(frontend if frontend is not None else getattr(model, "frontend", None)
                       ) as frames:
        for period in rates:
            if frontend is not None and described["variant"] != POOLED:  # the pool's is fixed
                frontend.set_rate(frame_period=period) if period is not None else frontend.set_rate()
            tag = rate_tag(period, native)
            for data_dir, utts in sets.items():
                res = RateResult(tag=tag, frame_period=period)
                texts, tokens = _decode_set(s2t, task, model, utts, res, frames, macs_utts, device)
                info = {"task": task, "test_set": data_dir.name, **about,
                        **res.info(learned_period)}
                _write_decoding(split_dir(Path(out_dir) / tag / data_dir.name, num_splits, split),
                                texts, tokens, info)
                results.append(info)
                if progress:
                    print(_progress_line(info), flush=True)
    return results


def split_dir(decode_dir: Path, num_splits: int, split: int) -> Path:
    """Where job ``split`` of ``num_splits`` writes its slice of ``decode_dir``."""
    return decode_dir if num_splits == 1 else decode_dir / f"split{num_splits}" / str(split)


def _split_utterances(data_dir: Path, num_splits: int, split: int) -> List[Tuple[str, str]]:
    """(utterance, audio path) of job ``split``'s slice of ``data_dir``'s wav.scp."""
    validate_data_dir(data_dir, required=("wav.scp",), optional=())
    wavs = read_kaldi_table(data_dir / "wav.scp")
    return [(utt, wavs[utt]) for utt in _slice(sorted(wavs), num_splits, split)]


class _FrameCounter:
    """Counts the frames a frontend outputs while the ``with`` block runs."""

    def __init__(self, frontend: Optional["torch.nn.Module"]) -> None:
        self.frontend, self.frames, self._hook = frontend, 0, None

    def __enter__(self) -> "_FrameCounter":
        if self.frontend is not None:
            self._hook = self.frontend.register_forward_hook(self._count)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()

    def _count(self, _module, _inputs, output) -> None:
        self.frames += int(output[1].sum())

    def take(self) -> int:
        """The frames counted since the last call."""
        frames, self.frames = self.frames, 0
        return frames


def _decode_set(s2t, task: str, model: "torch.nn.Module", utts: List[Tuple[str, str]],
                res: RateResult, frames: _FrameCounter, macs_utts: int, device: str,
                ) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Decode ``utts`` one at a time, adding what was measured to ``res``; returns the best
    hypothesis's text and tokens per utterance."""
    import numpy as np
    import soundfile as sf
    import torch

    from espnet_ofa.models.macs import count_macs
    from espnet_ofa.system_speed import timed_decode

    texts, tokens = {}, {}
    frames.take()
    for n, (utt, path) in enumerate(utts):
        speech, rate = sf.read(path, dtype="float32", always_2d=False)
        speech = torch.from_numpy(np.ascontiguousarray(speech))
        seconds = speech.numel() / rate
        if n < macs_utts:
            with torch.no_grad():
                lengths = torch.tensor([speech.numel()])
                res.macs += count_macs(lambda: model.encode(speech[None].to(device),
                                                            lengths.to(device)))
            res.macs_audio_seconds += seconds
            frames.take()  # the count above is not a decoding
        nbest, timing = timed_decode(s2t, task, speech, device)
        res.decode_seconds += timing.total
        res.frontend_seconds += timing.frontend
        res.encoder_seconds += timing.encoder
        text, token = nbest[0][0], nbest[0][1]
        texts[utt] = text if text is not None else " ".join(token)
        tokens[utt] = " ".join(token)
        res.num_utts += 1
        res.audio_seconds += seconds
        res.frames_20ms += num_frames(speech.numel())
        res.frames_out += frames.take()
    return texts, tokens


def _write_decoding(out: Path, texts: Dict[str, str], tokens: Dict[str, str], info: dict) -> None:
    """``text``, ``token`` (Kaldi tables, sorted) and ``info.json`` of one pass."""
    def table(rows: Dict[str, str]) -> str:
        return "".join(f"{u} {t}\n" if t else f"{u}\n" for u, t in sorted(rows.items()))

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "text", table(texts))
    atomic_write_text(out / "token", table(tokens))
    atomic_write_text(out / "info.json", json.dumps(info, indent=2) + "\n")


def _progress_line(info: dict) -> str:
    line = f"progress: decoded {info['test_set']} at {info['rate']}: {info['num_utts']} utts"
    if info["achieved_period"] is None:
        return line
    return f"{line}, achieved period {info['achieved_period']:.1f} ms, RTF {info['rtf']:.3f}"


def merge_splits(decode_dir: PathLike, num_splits: int) -> dict:
    """Join ``<decode_dir>/split<N>/{1..N}`` into ``<decode_dir>/{text,token,info.json}``."""
    decode_dir = Path(decode_dir)
    parts = [split_dir(decode_dir, num_splits, j) for j in range(1, num_splits + 1)]
    for p in parts:
        if not (p / "info.json").is_file():
            raise FileNotFoundError(f"{p / 'info.json'}: decoding job {p.name} did not finish; "
                                    "see its log")
    infos = [json.loads((p / "info.json").read_text()) for p in parts]
    for name in ("text", "token"):
        lines = []
        for p in parts:
            lines += (p / name).read_text(encoding="utf-8").splitlines(keepends=True)
        atomic_write_text(decode_dir / name, "".join(sorted(lines)))
    merged = dict(infos[0])
    merged.update({key: sum(i[key] for i in infos) for key in COUNTS})
    merged.update(derived(merged))
    if merged["rate"] == NATIVE:  # its period is the achieved one
        merged["frame_period"] = merged["achieved_period"]
    atomic_write_text(decode_dir / "info.json", json.dumps(merged, indent=2) + "\n")
    return merged


# ----------------------------------------------------------------------------- resuming
DONE_FILE = "decoded.json"


def decode_request(train_config: PathLike, model_file: PathLike, data_dirs: Sequence[PathLike],
                   frame_periods: Sequence[float], learned: str, own_period: bool,
                   inference_config: Optional[PathLike], num_splits: int) -> dict:
    """What a decode dir's outputs depend on: the model file, the inference options, the
    test sets' audio (their ``wav.scp``), the periods and the decoding flags. A dir whose
    recorded request equals this one need not be decoded again (stage 12 on a rerun)."""
    def digest(path: Optional[PathLike]) -> Optional[str]:
        return None if path is None else file_sha1(path)

    return {"train_config": digest(train_config), "model_file": digest(model_file),
            "inference_config": digest(inference_config),
            "data_dirs": {str(Path(d).resolve()): digest(Path(d) / "wav.scp") for d in data_dirs},
            "frame_periods": [float(p) for p in frame_periods], "learned": learned,
            "own_period": bool(own_period), "num_splits": int(num_splits)}


def is_decoded(out_dir: PathLike, request: dict) -> bool:
    """True when ``out_dir`` holds a finished decoding of exactly ``request``."""
    done = Path(out_dir) / DONE_FILE
    try:
        return json.loads(done.read_text(encoding="utf-8")) == request
    except (OSError, ValueError):
        return False


def mark_decoded(out_dir: PathLike, request: dict) -> None:
    """Record that ``out_dir`` holds the whole decoding of ``request`` (after every job and
    the merge have finished; written atomically, so a killed stage leaves no mark)."""
    atomic_write_text(Path(out_dir) / DONE_FILE, json.dumps(request, indent=2) + "\n")
