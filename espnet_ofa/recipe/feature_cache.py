"""Frozen SSL features computed once per (model, period, utterance), for downstream training.

A downstream model on a frozen OFA frontend at a fixed period sees the same SSL features
for an utterance in every epoch; running the SSL model again each epoch is most of the
training time. The same holds for a frozen off-the-shelf model (``frontend: ssl_teacher``,
the teacher as the pooled rival). Stages 10-11 of ``s2t.sh`` (``--cache_features true``)
therefore:

1. extract, per training experiment that qualifies (:func:`cache_spec`: ``frontend: ofa``,
   frozen, fixed period, or ``frontend: ssl_teacher``), the hidden states of every
   train/valid utterance into
   ``<dumpdir>/ofa_feats/<key>/<set>/feats.scp`` (Kaldi ark, float32, ESPnet's
   ``kaldi_ark`` type; :func:`extract`). ``layer: -1`` (a learned weighted sum) keeps all
   L hidden states, stacked as (T', L * D) per utterance, because the sum's weights are
   trained; ``layer: k`` keeps that one. Speed-perturbed copies are utterances of their
   own in the ``_sp`` set's wav.scp, so they get their own features.
2. collect global-MVN statistics and train with ``frontend: ofa_cached`` (or
   ``ssl_teacher_cached``, `espnet_ofa.frontend.cached`) on those features: the same
   weighted sum, SpecAugment and normalisation as the live frontend, without the SSL model.
   Statistics are per cache key, so per (model, period). The pooled rivals
   (``pooled_period``) train on their model's 20 ms cache and pool in the cached frontend,
   with statistics of their own per pooled period.
3. turn the trained model into one that runs from the waveform (:func:`to_waveform_model`):
   the config's frontend becomes the live one (``ofa``, ``ssl_teacher``) with the same
   options, and the SSL model's weights join the trained ones (the cached frontend's
   parameters are named as in the live one). Decoding, packing and publishing see an
   ordinary model.

A learnt rate, a sampled period, a jitter control, fine-tuning and any other frontend keep
the live path. A set whose utterances are the same audio as a set already cached for the
same model (another task's sets of the same corpus) links that cache's shards
(:func:`same_audio_cache`). Extraction is
resumable and atomic: shards of utterances are written whole (the shard's scp appears
last), a rerun skips finished shards, and a cache whose model, options or data changed is
recomputed (``meta.json`` records them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import yaml

from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table
from espnet_ofa.constants import INPUT_PERIOD_MS, SAMPLE_RATE
from espnet_ofa.fileio import PathLike, file_sha1
from espnet_ofa.registration import CACHED_FRONTENDS, FRONTEND_NAME, TEACHER_FRONTEND_NAME

logger = logging.getLogger(__name__)

FEATS_SCP = "feats.scp"
META = "meta.json"
# Utterances per shard: the unit of resumption (a killed run loses at most one shard).
SHARD_UTTS = 200


@dataclass(frozen=True)
class CacheSpec:
    """What fixes the cached features: the frozen SSL model, its rate and which layers."""

    model: str  # the OFA checkpoint as the config gives it (a .pth, or a packed model's
    #             name), or the teacher's source (``frontend: ssl_teacher``)
    frame_period: Optional[float]
    lam: Optional[float]
    layer: int
    frontend: str = FRONTEND_NAME  # the live frontend: a key of CACHED_FRONTENDS
    teacher_conf: str = ""  # the teacher's load_teacher options, as sorted JSON

    def key(self) -> str:
        """Directory name: one per (model, period, layers), e.g. ``ofa_x_3f2a9c1d_p40_all``
        or ``ssl_teacher_x_0c1d2e3f_p20_all`` (8 hex digits of the model's absolute path,
        and the teacher's options; its contents are checked at extraction, so the key is
        known before the model exists)."""
        from espnet_ofa.recipe.experiments import stats_key

        rate = f"p{self.frame_period:g}" if self.frame_period is not None else f"lam{self.lam:g}"
        layers = "all" if self.layer == -1 else f"l{self.layer}"
        if self.frontend == FRONTEND_NAME:
            base = stats_key({"frontend": FRONTEND_NAME}, self.model)
            where = os.path.abspath(self.model)
        else:
            base = f"{self.frontend}_{Path(self.model).name or 'model'}"
            where = f"{os.path.abspath(self.model)}|{self.teacher_conf}"
        return f"{base}_{hashlib.sha1(where.encode()).hexdigest()[:8]}_{rate}_{layers}"

    def identity(self) -> dict:
        """The fields a cache's ``meta.json`` records (an OFA cache's as before the teacher
        fields existed, so the caches written then stay valid)."""
        fields = asdict(self)
        if self.frontend == FRONTEND_NAME:
            del fields["frontend"], fields["teacher_conf"]
        return fields


def frontend_overrides(options: str) -> Tuple[Optional[str], Dict[str, object]]:
    """``--frontend NAME`` and the ``--frontend_conf key=value`` pairs of an option string
    (the plan's extra options and ``--<task>_args``), values read as YAML like ESPnet does."""
    words = shlex.split(options or "")
    frontend, conf = None, {}
    i = 0
    while i < len(words):
        name, eq, value = words[i].partition("=")
        if name in ("--frontend", "--frontend_conf"):
            if not eq:
                i += 1
                value = words[i] if i < len(words) else ""
            if name == "--frontend":
                frontend = value
            else:
                key, eq, raw = value.partition("=")
                if not eq:
                    raise ValueError(f"--frontend_conf {value!r}: expected key=value")
                conf[key] = yaml.safe_load(raw)
        i += 1
    return frontend, conf


def _frozen_frontend(config: PathLike,
                     options: str) -> Tuple[Optional[str], Optional[Dict[str, Any]], str]:
    """The frontend of a training config with its extra options over it, and its options
    with their defaults: (``ofa`` or ``ssl_teacher``, options, ""), or (None, None, why not)
    for a frontend without SSL features to cache."""
    conf = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    frontend, overrides = frontend_overrides(options)
    frontend = frontend or conf.get("frontend")
    fconf = {**(conf.get("frontend_conf") or {}), **overrides}
    if frontend not in CACHED_FRONTENDS:
        return None, None, (f"frontend {frontend or 'default'!r} is none of "
                            f"{sorted(CACHED_FRONTENDS)}")
    try:
        if frontend == TEACHER_FRONTEND_NAME:
            from espnet_ofa.frontend.teacher import teacher_options

            return frontend, teacher_options(fconf), ""
        from espnet_ofa.frontend.ofa import ofa_options

        return frontend, ofa_options(fconf), ""
    except ValueError as err:
        raise ValueError(f"{config}: {err}") from None


def _spec(frontend: str, options: Dict[str, Any],
          config: PathLike) -> Tuple[Optional[CacheSpec], str]:
    if frontend == TEACHER_FRONTEND_NAME:  # always frozen, at its own 20 ms (pooled later)
        if not options["source"]:
            raise ValueError(f"{config}: frontend: {TEACHER_FRONTEND_NAME} needs "
                             "frontend_conf.source")
        return CacheSpec(model=str(options["source"]), frame_period=float(INPUT_PERIOD_MS),
                         lam=None, layer=int(options["layer"]), frontend=frontend,
                         teacher_conf=json.dumps(options["teacher_conf"] or {},
                                                 sort_keys=True)), ""
    from espnet_ofa.frontend.cached import needs_live_model
    from espnet_ofa.frontend.ofa import ssl_frame_period

    why = needs_live_model(options)
    if why:
        return None, why
    if not options["model"]:
        raise ValueError(f"{config}: frontend: ofa needs frontend_conf.model (or --ofa_model)")
    lam = options["lam"]
    period = None if lam is not None else ssl_frame_period(
        options["frame_period"], lam, options["pooled_period"])
    return CacheSpec(model=str(options["model"]),
                     frame_period=None if period is None else float(period),
                     lam=None if lam is None else float(lam), layer=int(options["layer"])), ""


def cache_spec(config: PathLike, options: str = "") -> Tuple[Optional[CacheSpec], str]:
    """The cache a training run can use, or (None, why not). A pooled rival's is its SSL
    model's at 20 ms (it pools while training).

    Args:
        config: the training YAML.
        options: extra training options (``--frontend_conf model=...`` etc.) that override it.
    """
    frontend, options_, why = _frozen_frontend(config, options)
    return (None, why) if frontend is None else _spec(frontend, options_, config)


# ----------------------------------------------------------------------------- extraction
def _batches(lengths: Dict[str, int], utts: Sequence[str], max_samples: int) -> Iterator[List[str]]:
    """Utterances in length order, grouped so that a padded batch holds <= max_samples."""
    batch: List[str] = []
    for utt in sorted(utts, key=lambda u: lengths[u]):
        if batch and lengths[utt] * (len(batch) + 1) > max_samples:
            yield batch
            batch = []
        batch.append(utt)
    if batch:
        yield batch


def _state_sha1(module: "torch.nn.Module") -> str:  # noqa: F821 (torch: imported lazily)
    """A digest of a model's weights (names and values): what a teacher computes with,
    whatever the files it was loaded from."""
    import torch

    digest = hashlib.sha1()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


HiddenStates = Callable[["torch.Tensor", "torch.Tensor"],  # noqa: F821
                        Tuple[Sequence["torch.Tensor"], "torch.Tensor"]]  # noqa: F821


class FrozenModel(NamedTuple):
    """A frozen SSL model ready to cache: ``hidden_states((B, N) waveforms, (B,) samples) ->
    ([(B, T', D)] the hidden states to cache, (B,) frames)``, and the module under it."""

    hidden_states: HiddenStates
    module: "torch.nn.Module"  # noqa: F821


def frozen_model(spec: CacheSpec, device: str = "cpu") -> FrozenModel:
    """The frozen SSL model of ``spec`` (the teacher, or the OFA student at its period)."""
    import torch

    if spec.frontend == TEACHER_FRONTEND_NAME:
        from espnet_ofa.frontend.teacher import SSLTeacherFrontend

        teacher = SSLTeacherFrontend(source=spec.model, layer=spec.layer,
                                     teacher_conf=json.loads(spec.teacher_conf or "{}"))
        if teacher.frame_period != spec.frame_period:
            raise ValueError(f"{spec.model}: the teacher's frame period is "
                             f"{teacher.frame_period:g} ms, not {spec.frame_period:g} ms; "
                             "only 20 ms SSL models can be cached")
        model = teacher.teacher.to(device).eval()  # computes just the layers asked for

        def teacher_states(wav: torch.Tensor, lengths: torch.Tensor):
            out = model(wav, lengths)
            return out.hidden, out.lengths

        return FrozenModel(teacher_states, model)

    from espnet_ofa.frontend.ofa import OFAFrontend

    student = OFAFrontend(model=spec.model, frame_period=spec.frame_period, lam=spec.lam,
                          layer=spec.layer, freeze=True).to(device).eval().student

    def student_states(wav: torch.Tensor, lengths: torch.Tensor):
        out = student(wav, lengths, frame_period=spec.frame_period, lam=spec.lam)
        return (out.hidden if spec.layer == -1 else [out.hidden[spec.layer]]), out.lengths

    return FrozenModel(student_states, student)


def model_digest(spec: CacheSpec, model: Optional[FrozenModel] = None) -> str:
    """What identifies the frozen model's weights: an OFA checkpoint by its file (read, the
    model not built), a teacher by its loaded weights (``model``, from `frozen_model`), since
    its source may be a bundle name or a directory."""
    if spec.frontend == TEACHER_FRONTEND_NAME:
        if model is None:
            raise ValueError("a teacher's digest is that of its loaded weights: pass its "
                             "frozen_model")
        return _state_sha1(model.module)
    from espnet_ofa.frontend.ofa import resolve_model

    return file_sha1(resolve_model(spec.model))


def _meta(spec: CacheSpec, model_sha1: str, wav_scp: Path, shard_utts: int) -> dict:
    """What the features depend on: a cache whose meta differs is extracted again."""
    return {"spec": spec.identity(), "model_sha1": model_sha1,
            "wav_scp": str(wav_scp.resolve()), "wav_scp_sha1": file_sha1(wav_scp),
            "shard_utts": shard_utts}


def extract(
    spec: CacheSpec,
    data_dir: PathLike,
    out_dir: PathLike,
    max_batch_samples: int = SAMPLE_RATE * 40,
    shard_utts: int = SHARD_UTTS,
    device: str = "cpu",
    progress: bool = True,
    build_model: Optional[Callable[[], FrozenModel]] = None,
) -> Path:
    """Write the SSL features of ``data_dir/wav.scp`` to ``out_dir/feats.scp`` (and
    ``feats_shape``: ``utt frames,channels``); returns the feats.scp.

    Each utterance's matrix is (T', L * D) for ``layer: -1`` (hidden state l in columns
    l*D..(l+1)*D) or (T', D); T' is exactly the frame count the live frontend returns.
    ``build_model`` gives the frozen model of ``spec`` (default: `frozen_model`, built
    here); it is called only when a shard must be computed or a teacher identified.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{wav_scp} not found: extract from a formatted data dir "
                                "(s2t.sh stage 3 writes dump/raw/<set>/wav.scp)")
    # Built when a shard must be computed, so that a finished or linked OFA cache never
    # builds its model; a teacher is built first, as only its loaded weights identify it.
    build_model = build_model or functools.partial(frozen_model, spec, device)
    model = build_model() if spec.frontend == TEACHER_FRONTEND_NAME else None
    meta = _meta(spec, model_digest(spec, model), wav_scp, shard_utts)
    if _finished_or_reset(out_dir, meta):
        return out_dir / FEATS_SCP
    shards = out_dir / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / META, json.dumps(meta, indent=2) + "\n")

    wavs = read_kaldi_table(wav_scp)
    utts = sorted(wavs)
    if not utts:
        raise ValueError(f"{wav_scp} is empty: nothing to extract")
    if not any(shards.glob("*.scp")):
        twin = same_audio_cache(meta, out_dir)
        if twin is not None:
            logger.info("%s: the same audio as %s: its shards are linked, not extracted",
                        out_dir, twin)
            link_shards(twin / "shards", shards)
    start, done = time.perf_counter(), 0
    for k in range(0, len(utts), shard_utts):
        shard = utts[k:k + shard_utts]
        scp = shards / f"feats.{k // shard_utts}.scp"
        if not scp.is_file():
            if model is None:
                model = build_model()
            _write_shard(model, {u: wavs[u] for u in shard}, scp, max_batch_samples, device)
        done += len(shard)
        if progress:
            rate = done / max(time.perf_counter() - start, 1e-9)
            print(f"progress: {out_dir}: {done}/{len(utts)} utterances ({rate:.1f}/s)",
                  flush=True)
    parts = range((len(utts) + shard_utts - 1) // shard_utts)
    for name, ext in (("feats_shape", "shape"), (FEATS_SCP, "scp")):
        atomic_write_text(out_dir / name, "".join(
            (shards / f"feats.{n}.{ext}").read_text(encoding="utf-8") for n in parts))
    atomic_write_text(out_dir / META, json.dumps({**meta, "complete": True}, indent=2) + "\n")
    return out_dir / FEATS_SCP


def _finished_or_reset(out_dir: Path, meta: dict) -> bool:
    """True when ``out_dir`` holds the complete cache of ``meta``; a cache of another
    model, options or data is removed (extracted again), a partial one kept (resumed)."""
    meta_file = out_dir / META
    if not meta_file.is_file():
        return False
    old = json.loads(meta_file.read_text(encoding="utf-8"))
    if {k: v for k, v in old.items() if k != "complete"} != meta:
        logger.info("%s: model, options or data changed: extracting again", out_dir)
        shutil.rmtree(out_dir)
        return False
    return bool(old.get("complete")) and (out_dir / FEATS_SCP).is_file()


def _write_shard(model: FrozenModel, wavs: Dict[str, str], scp: Path, max_batch_samples: int,
                 device: str) -> None:
    """The features of the utterances ``wavs`` (utt -> audio file) into ``<scp>`` and the
    ark and ``.shape`` beside it; the shard exists once its scp does."""
    import kaldiio
    import numpy as np
    import soundfile as sf
    import torch

    audio = {u: sf.read(path, dtype="float32", always_2d=False)[0] for u, path in wavs.items()}
    for u, a in audio.items():
        if a.ndim != 1:
            raise ValueError(f"{wavs[u]} ({u}) has {a.shape[1]} channels; the SSL model "
                             "reads mono audio: format the data dir first (stage 3)")
    feats: Dict[str, np.ndarray] = {}
    lengths = {u: len(a) for u, a in audio.items()}
    for batch in _batches(lengths, list(wavs), max_batch_samples):
        n = torch.tensor([lengths[u] for u in batch])
        wav = torch.zeros(len(batch), int(n.max()))
        for i, u in enumerate(batch):
            wav[i, : lengths[u]] = torch.from_numpy(audio[u])
        with torch.no_grad():
            hidden, frames = model.hidden_states(wav.to(device), n.to(device))
        stacked = torch.stack(list(hidden), dim=2).float().cpu()  # (B, T', L, D)
        for i, u in enumerate(batch):
            t = int(frames[i])
            feats[u] = stacked[i, :t].reshape(t, -1).numpy()
    tmp_scp = scp.with_suffix(".scp.tmp")
    with kaldiio.WriteHelper(f"ark,scp:{scp.with_suffix('.ark')},{tmp_scp}") as writer:
        for u in wavs:
            writer(u, feats[u])
    atomic_write_text(scp.with_suffix(".shape"), "".join(
        f"{u} {feats[u].shape[0]},{feats[u].shape[1]}\n" for u in wavs))
    os.replace(tmp_scp, scp)


def extract_sets(spec: CacheSpec, data_dirs: Sequence[PathLike], out_dirs: Sequence[PathLike],
                 device: str = "cpu", **options: Any) -> List[Path]:
    """`extract` each ``data_dirs[i]`` into ``out_dirs[i]`` with one frozen model, built at
    most once (a recipe's train and valid sets in one process: one start-up, one load)."""
    if len(data_dirs) != len(out_dirs):
        raise ValueError(f"{len(data_dirs)} data dirs but {len(out_dirs)} output dirs: give "
                         "one output dir per data dir, in the same order")
    build_once = functools.cache(functools.partial(frozen_model, spec, device))
    return [extract(spec, data_dir, out_dir, device=device, build_model=build_once, **options)
            for data_dir, out_dir in zip(data_dirs, out_dirs)]


def audio_sha1(wav_scp: PathLike) -> Optional[str]:
    """A digest of what a wav.scp holds: its utterance names and the bytes of their files
    (None when an entry is no plain file, e.g. a command)."""
    digest = hashlib.sha1()
    for utt, path in sorted(read_kaldi_table(wav_scp).items()):
        if not os.path.isfile(path):
            return None
        digest.update(f"{utt} {file_sha1(path)}\n".encode())
    return digest.hexdigest()


def same_audio_cache(meta: dict, out_dir: Path) -> Optional[Path]:
    """A complete cache beside ``out_dir`` (another data set of the same key) of the same
    model and options whose set is the same utterances with the same audio bytes, e.g.
    speechocean762's word and phone sets: its features are these ones. None if there is none."""
    same = ("spec", "model_sha1", "shard_utts")
    utts = set(read_kaldi_table(meta["wav_scp"]))
    digest: Optional[str] = None
    for other in sorted(out_dir.parent.glob(f"*/{META}")):
        if other.parent.resolve() == out_dir.resolve():
            continue
        old = json.loads(other.read_text(encoding="utf-8"))
        if (not old.get("complete") or any(old.get(k) != meta[k] for k in same)
                or not Path(old["wav_scp"]).is_file()
                or set(read_kaldi_table(old["wav_scp"])) != utts):  # cheap before the bytes
            continue
        digest = digest or audio_sha1(meta["wav_scp"])
        if digest is not None and audio_sha1(old["wav_scp"]) == digest:
            return other.parent
    return None


def link_shards(src: Path, dst: Path) -> None:
    """Give ``dst`` the finished shards of ``src``: the arks as hard links (no copy on disk,
    and they keep their content if ``src`` is extracted again), the scp lines pointing to
    them, the shapes; each shard's scp last, as extraction writes them."""
    for scp in sorted(src.glob("feats.*.scp")):
        ark = scp.with_suffix(".ark")
        linked = dst / ark.name
        if linked.exists():
            linked.unlink()
        try:
            os.link(ark, linked)
        except OSError:  # another file system
            shutil.copyfile(ark, linked)
        shutil.copyfile(scp.with_suffix(".shape"), dst / scp.with_suffix(".shape").name)
        lines = []
        for line in scp.read_text(encoding="utf-8").splitlines():
            utt, where = line.split(maxsplit=1)
            offset = where.rsplit(":", 1)[1]
            lines.append(f"{utt} {linked}:{offset}\n")
        atomic_write_text(dst / scp.name, "".join(lines))


def cache_bytes(out_dir: PathLike) -> int:
    """Bytes the cache of one set takes on disk."""
    return sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- packing
def waveform_config(cached_conf: dict) -> dict:
    """The training config of the same model on waveforms: the live frontend (``ofa``,
    ``ssl_teacher``), same options."""
    live = {cached: frontend for frontend, cached in CACHED_FRONTENDS.items()}
    frontend = cached_conf.get("frontend")
    if frontend not in live:
        raise ValueError(f"frontend is {frontend!r}, none of {sorted(live)}: not a model "
                         "trained on cached SSL features")
    return {**cached_conf, "frontend": live[frontend]}


def _live_frontend(conf: dict) -> "torch.nn.Module":  # noqa: F821 (torch: imported lazily)
    """The live frontend of a waveform config (`waveform_config`)."""
    fconf = conf.get("frontend_conf") or {}
    if conf["frontend"] == TEACHER_FRONTEND_NAME:
        from espnet_ofa.frontend.teacher import SSLTeacherFrontend

        return SSLTeacherFrontend(**fconf)
    from espnet_ofa.frontend.ofa import OFAFrontend

    return OFAFrontend(**fconf)


def waveform_state(cached_state: Dict[str, "object"], frontend_state: Dict[str, "object"],
                   prefix: str = "frontend.") -> Dict[str, "object"]:
    """The state dict of the waveform model: the trained weights, plus the OFA frontend's
    (the cached frontend's own parameters must be a subset of the live one's, by name)."""
    trained = {k[len(prefix):] for k in cached_state if k.startswith(prefix)}
    unknown = trained - set(frontend_state)
    if unknown:
        raise ValueError(f"cached frontend parameters {sorted(unknown)} have no counterpart "
                         "in frontend: ofa; the two frontends no longer match")
    state = dict(cached_state)
    for name, value in frontend_state.items():
        state.setdefault(prefix + name, value)
    return state


def to_waveform_model(cached_dir: PathLike, out_dir: PathLike) -> List[Path]:
    """Write ``out_dir/config.yaml`` and, for every model file of ``cached_dir`` (all
    ``*.pth`` but the resumable ``checkpoint.pth``), the same file for the live frontend.

    Symbolic links (ESPnet's ``valid.loss.best.pth -> 4epoch.pth``) stay links. A file
    already converted and newer than its source (and the OFA checkpoint) is left alone, so a
    rerun of a finished training changes nothing. Returns the model files of ``out_dir``.
    """
    import torch

    cached_dir, out_dir = Path(cached_dir), Path(out_dir)
    conf_path = cached_dir / "config.yaml"
    if not conf_path.is_file():
        raise FileNotFoundError(f"{conf_path} not found: train on the cached features first")
    conf = waveform_config(yaml.safe_load(conf_path.read_text(encoding="utf-8")) or {})
    ssl_checkpoint = None  # a teacher's source may be a bundle or a directory: its cache
    if conf["frontend"] == FRONTEND_NAME:  # checks the weights (frozen_model)
        from espnet_ofa.frontend.ofa import resolve_model

        ssl_checkpoint = resolve_model((conf.get("frontend_conf") or {}).get("model"))
    files = sorted(p for p in cached_dir.glob("*.pth") if p.name != "checkpoint.pth")
    if not files:
        raise FileNotFoundError(f"{cached_dir} has no model files (*.pth): did training finish?")
    out_dir.mkdir(parents=True, exist_ok=True)
    frontend_state = None
    written = []
    for src in sorted(files, key=lambda p: p.is_symlink()):  # real files first
        dst = out_dir / src.name
        written.append(dst)
        if src.is_symlink():
            if dst.is_symlink() and os.readlink(dst) == os.readlink(src):
                continue
        elif (dst.is_file() and not dst.is_symlink() and dst.stat().st_mtime_ns >= max(
                src.stat().st_mtime_ns,
                ssl_checkpoint.stat().st_mtime_ns if ssl_checkpoint else 0)):
            continue
        tmp = dst.with_name(dst.name + ".tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        if src.is_symlink():
            os.symlink(os.readlink(src), tmp)
        else:
            if frontend_state is None:
                frontend_state = _live_frontend(conf).state_dict()
            state = torch.load(src, map_location="cpu", weights_only=True)
            torch.save(waveform_state(state, frontend_state), tmp)
        os.replace(tmp, dst)
    text = yaml.safe_dump(conf, sort_keys=False)
    config = out_dir / "config.yaml"
    if not config.is_file() or config.read_text(encoding="utf-8") != text:
        atomic_write_text(config, text)
    return written


# ----------------------------------------------------------------------------- recipe plan
def _plan_lines(plan_tsv: PathLike) -> List[List[str]]:
    """The plan's lines as [exp dir, config, stats key, SSL model, extra options]."""
    return [(line.split("\t") + [""] * 5)[:5]
            for line in Path(plan_tsv).read_text(encoding="utf-8").splitlines()]


def _plan_entries(plan_tsv: PathLike, train_args: str,
                  enabled: bool) -> List[Tuple[str, str, str]]:
    """Per plan line: the cache key it trains on (``-``: the live frontend, with the reason
    logged), the statistics it is normalised with (its cache's own, so per (model, period),
    and a pooled rival's per pooled period too, since averaging shrinks the variance; the
    plan's key for the live frontend) and the frontend it trains with on the cache (``-``)."""
    entries = []
    for exp_dir, config, stats, _model, extra in _plan_lines(plan_tsv):
        spec, why, pooled = None, "feature caching is off", None
        if enabled:
            frontend, options, why = _frozen_frontend(config, f"{extra} {train_args}")
            if frontend is not None:
                spec, why = _spec(frontend, options, config)
                pooled = options["pooled_period"]
        if spec is None:
            if enabled:
                logger.info("%s: live frontend (%s)", exp_dir, why)
            entries.append(("-", stats, "-"))
        else:
            key = spec.key()
            entries.append((key, key if pooled is None else f"{key}_pooled{float(pooled):g}",
                            CACHED_FRONTENDS[spec.frontend]))
    return entries


def plan_caches(plan_tsv: PathLike, train_args: str = "", enabled: bool = True) -> List[str]:
    """For each line of the recipe's experiment plan (`espnet_ofa.recipe.experiments`):
    the cache key it trains on, or ``-`` for the live frontend (with the reason logged)."""
    return [cache for cache, _, _ in _plan_entries(plan_tsv, train_args, enabled)]


def plan_stats(plan_tsv: PathLike, train_args: str = "",
               enabled: bool = True) -> List[Tuple[str, str, bool, bool, str]]:
    """For each line of the plan: the cache key it trains on (``-``: the live frontend), the
    statistics it is normalised with (`_plan_entries`), whether it collects them in stage
    10 (the first of each key, `experiments.first_of_each`), whether it extracts its cache
    there (the first of each cache: the pooled rivals share their model's 20 ms one) and
    the frontend it trains with on the cache (``ofa_cached``, ``ssl_teacher_cached``; ``-``)."""
    from espnet_ofa.recipe.experiments import first_of_each

    entries = _plan_entries(plan_tsv, train_args, enabled)
    collectors = set(first_of_each([stats for _, stats, _ in entries]).values())
    extractors = {i for cache, i in first_of_each([c for c, _, _ in entries]).items()
                  if cache != "-"}
    return [(cache, stats, i in collectors, i in extractors, frontend)
            for i, (cache, stats, frontend) in enumerate(entries)]
