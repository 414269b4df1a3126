"""A sweep of bad or unusual inputs against the entry points a user touches.

    python tools/reliability_sweep.py            # the table and the counts; exit 1 on a crash
    python tools/reliability_sweep.py -k frontend   # only the cases whose name or entry has it

Each case states what a good outcome is: a *clear error* (the exception type and a regex its
message must match: the problem, and the fix where there is one) or a *correct result* (a
check on the value). The runner classifies what really happened:

    clear    the expected error, raised by an espnet_ofa check, with a message that matches
    correct  a result, and the check accepts it
    unclear  an error, but of another type, a message that does not name the problem, or
             raised deep inside torch/numpy/... instead of by our check
    crash    an unexpected IndexError/KeyError/AttributeError/TypeError/... (a traceback)
    silent   no error where one was due, or a wrong value

and exits non-zero if any case is ``crash`` or ``silent``. Cases build tiny models in-process
and work in temporary directories; the speechocean762 cases copy a few files of
``../shared/data/speechocean762_mini`` (``$SPEECHOCEAN762_MINI``) and are skipped without it.
The ``espnet_ofa.bin.*`` commands run in this process through `runpy` (``python -m``'s own
mechanism, with ``sys.argv`` set), so a command's exit status and stderr are what the user
sees, without a Python start-up per case. ``tests/test_reliability_sweep.py`` runs every case
as a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import runpy
import shutil
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: this tree's espnet_ofa
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

import espnet_ofa  # noqa: E402
from espnet_ofa.data.datadir import DataDirError  # noqa: E402
from espnet_ofa.models.pretrained import CheckpointError  # noqa: E402
from espnet_ofa.recipe.speechocean762 import SpeechOcean762Error  # noqa: E402
from espnet_ofa.zoo import ZooError  # noqa: E402

PACKAGE_DIR = Path(espnet_ofa.__file__).resolve().parent
SPEECHOCEAN762_MINI = Path(os.environ.get(
    "SPEECHOCEAN762_MINI", REPO.parent / "shared" / "data" / "speechocean762_mini"))

OUTCOMES = ("clear", "correct", "unclear", "crash", "silent", "skipped")
# Exception types that only a bug raises: a user never gets them from a check.
CRASH_TYPES = (IndexError, KeyError, AttributeError, TypeError, ZeroDivisionError,
               AssertionError, UnboundLocalError, NameError, RecursionError,
               NotImplementedError, MemoryError, StopIteration)


class Skip(Exception):
    """The case needs something this machine lacks (e.g. the speechocean762 copy)."""


class CommandFailed(Exception):
    """An ``espnet_ofa.bin`` command exited with a non-zero status."""

    def __init__(self, status: int, stderr: str) -> None:
        lines = [x for x in stderr.strip().splitlines() if x.strip()]
        super().__init__(f"exit {status}: {lines[-1] if lines else '(no message)'}")
        self.status, self.stderr = status, stderr


@dataclass
class Case:
    """One input and what a good outcome is: ``error`` + ``match``, or ``check``."""

    name: str
    entry: str
    run: Callable[["Workspace"], Any]
    error: Optional[Type[BaseException]] = None
    match: str = ""
    check: Optional[Callable[[Any], bool]] = None


@dataclass
class Outcome:
    case: Case
    outcome: str
    message: str
    seconds: float


CASES: List[Case] = []


def clear(name: str, entry: str, error: Type[BaseException], match: str):
    """Register a case whose good outcome is ``error`` with a message matching ``match``."""
    def register(run):
        CASES.append(Case(name, entry, run, error=error, match=match))
        return run
    return register


def correct(name: str, entry: str, check: Callable[[Any], bool]):
    """Register a case whose good outcome is a value that ``check`` accepts."""
    def register(run):
        CASES.append(Case(name, entry, run, check=check))
        return run
    return register


# ============================================================================ workspace


@contextlib.contextmanager
def env(**values: Optional[str]) -> Iterator[None]:
    """Set (or with None, unset) environment variables for the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Workspace:
    """Temporary directories and the tiny models the cases share (each built once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._count = 0
        self._cache: Dict[str, Any] = {}

    def tmp(self) -> Path:
        self._count += 1
        path = self.root / f"case{self._count:03d}"
        path.mkdir()
        return path

    def _once(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # -------------------------------------------------------------- models
    @property
    def student(self):
        from espnet_ofa.models.student import build_student

        def build():
            with torch.random.fork_rng():
                torch.manual_seed(0)
                return build_student("tiny").eval()
        return self._once("student", build)

    @property
    def checkpoint(self) -> Path:
        """The tiny student as ofa_ssl_train writes it (read-only: copy before changing)."""
        from espnet_ofa.models.pretrained import save_student

        return self._once("checkpoint", lambda: save_student(
            self.student, self.root / "shared" / "exp" / "ofa", preset="tiny"))

    def checkpoint_copy(self) -> Path:
        exp = shutil.copytree(self.checkpoint.parent, self.tmp() / "exp" / "ofa")
        return exp / self.checkpoint.name

    @property
    def archive(self) -> Path:
        """The tiny student packed as a zoo archive."""
        from espnet_ofa.zoo import pack_ofa_ssl

        def build():
            with contextlib.chdir(self.checkpoint.parents[1].parent):
                return pack_ofa_ssl(self.checkpoint.parent / "config.yaml", self.checkpoint,
                                    self.root / "shared" / "ofa.zip").resolve()
        return self._once("archive", build)

    def other_kind_checkpoint(self) -> Path:
        """An ESPnet ASR model (log-mel frontend) where an OFA model is expected."""
        exp = self.tmp() / "exp" / "asr"
        exp.mkdir(parents=True)
        (exp / "config.yaml").write_text(yaml.safe_dump(
            {"frontend": "default", "frontend_conf": {"fs": "16k"}, "encoder": "rnn",
             "token_list": ["<blank>", "a"]}), encoding="utf-8")
        torch.save({"encoder.enc.0.weight": torch.zeros(4, 4),
                    "ctc.ctc_lo.weight": torch.zeros(2, 4)}, exp / "valid.loss.best.pth")
        return exp / "valid.loss.best.pth"

    # -------------------------------------------------------------- audio
    @staticmethod
    def wav(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        n = int(seconds * rate)
        data = 0.1 * np.sin(np.arange(n) / 5.0)[:, None].repeat(channels, 1)
        soundfile.write(path, data.astype(np.float32), rate, subtype="PCM_16")
        return path

    @staticmethod
    def batch(seconds: float = 1.0, batch: int = 2) -> Tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        n = int(seconds * 16000)
        lengths = torch.tensor([n] + [n * 3 // 4] * (batch - 1))
        return 0.1 * torch.randn(batch, n, generator=gen), lengths

    def data_dir(self, files: Dict[str, str], wavs: Tuple[str, ...] = ()) -> Path:
        """A data dir with these tables; ``wavs`` are written (0.5 s, 16 kHz) inside it."""
        root = self.tmp() / "data"
        root.mkdir()
        for name in wavs:
            self.wav(root / name)
        for name, text in files.items():
            (root / name).write_text(text.format(dir=root), encoding="utf-8")
        return root

    # -------------------------------------------------------------- corpus
    def corpus(self) -> Path:
        """A copy of a few speakers of speechocean762_mini, in the release's layout."""
        base = self._once("corpus", self._build_corpus)
        return Path(shutil.copytree(base, self.tmp() / "speechocean762"))

    def _build_corpus(self) -> Path:
        if not (SPEECHOCEAN762_MINI / "train" / "wav.scp").is_file():
            raise Skip(f"speechocean762_mini not found at {SPEECHOCEAN762_MINI} "
                       "(set SPEECHOCEAN762_MINI)")
        src, dst = SPEECHOCEAN762_MINI, self.root / "shared" / "speechocean762"
        keep: Dict[str, List[str]] = {}
        for split, n_speakers in (("train", 3), ("test", 1)):
            utt2spk = [line.split() for line in
                       (src / split / "utt2spk").read_text(encoding="utf-8").splitlines()]
            speakers = sorted({s for _, s in utt2spk})[:n_speakers]
            keep[split] = [u for s in speakers for u in [u for u, x in utt2spk if x == s][:2]]
            (dst / split).mkdir(parents=True)
            for name in ("wav.scp", "text", "utt2spk", "spk2age", "spk2gender", "spk2utt"):
                lines = (src / split / name).read_text(encoding="utf-8").splitlines()
                keys = set(keep[split]) if name in ("wav.scp", "text", "utt2spk") else set(speakers)
                kept = [x for x in lines if x.split()[0] in keys]
                if name == "spk2utt":
                    kept = [f"{s} " + " ".join(u for u, x in utt2spk if x == s and u in keep[split])
                            for s in speakers]
                (dst / split / name).write_text("\n".join(kept) + "\n", encoding="utf-8")
            for line in (dst / split / "wav.scp").read_text(encoding="utf-8").splitlines():
                rel = line.split()[1]
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, dst / rel)
        utts = {u for us in keep.values() for u in us}
        phones = (src / "resource" / "text-phone").read_text(encoding="utf-8").splitlines()
        (dst / "resource").mkdir()
        (dst / "resource" / "text-phone").write_text(
            "\n".join(x for x in phones if x.split(".")[0] in utts) + "\n", encoding="utf-8")
        shutil.copyfile(src / "resource" / "lexicon.txt", dst / "resource" / "lexicon.txt")
        return dst


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise RuntimeError(f"the sweep's edit found no {old!r} in {path}")  # a sweep bug
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def first_line(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split()


def run_command(module: str, *args: str) -> str:
    """``python -m module args`` in this process; its stdout, or `CommandFailed`."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [module, *map(str, args)]
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exit_:
        code = exit_.code
        if isinstance(code, str):  # sys.exit("message"): Python prints it, exits 1
            err.write(code + "\n")
        status = 1 if isinstance(code, str) else int(code or 0)
    finally:
        sys.argv = argv
    if status != 0:
        raise CommandFailed(status, err.getvalue())
    return out.getvalue()


# ============================================================================ compression

LENGTHS = torch.tensor([10, 6])
E = "compression"


def _alpha(*shape, **kw) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(**kw)


def _counts(alpha: torch.Tensor, lengths: torch.Tensor, period: float) -> bool:
    """CIF on ``alpha`` gives each utterance round(T * 20 / period) frames (at least 1)."""
    from espnet_ofa.compression import cif

    out = cif(torch.ones(alpha.shape[0], alpha.shape[1], 2), alpha, lengths)
    wanted = torch.clamp(torch.round(lengths.double() * 20.0 / period), min=1).long()
    return torch.equal(out.lengths, torch.where(lengths > 0, wanted, 0))


def _rate_alpha(alpha, lengths=LENGTHS, **rate):
    from espnet_ofa.compression import rate_alpha

    return rate_alpha(alpha, lengths, **rate)


clear("alpha_pred above 1 (logits), lam", "rate_alpha", ValueError,
      r"alpha_pred must be <= 1.*sigmoid")(
    lambda ws: _rate_alpha(torch.full((2, 10), 3.0), lam=0.5))
clear("alpha_pred above 1 (logits), frame_period", "rate_alpha", ValueError,
      r"alpha_pred must be <= 1.*sigmoid")(
    lambda ws: _rate_alpha(torch.full((2, 10), 3.0), frame_period=40.0))
clear("alpha_pred negative", "rate_alpha", ValueError, r"alpha_pred must be >= 0")(
    lambda ws: _rate_alpha(_alpha(2, 10) - 2.0, frame_period=40.0))


def _nan_at(index, value=math.nan):
    alpha = _alpha(2, 10)
    alpha[index] = value
    return alpha


clear("alpha_pred NaN in a valid frame", "rate_alpha", ValueError,
      r"alpha_pred contains NaN or Inf within its valid frames")(
    lambda ws: _rate_alpha(_nan_at((1, 2)), frame_period=40.0))
clear("alpha_pred +Inf", "rate_alpha", ValueError, r"alpha_pred contains NaN or Inf")(
    lambda ws: _rate_alpha(_nan_at((0, 0), math.inf), lam=0.5))
correct("alpha_pred NaN only in padding", "rate_alpha",
        lambda pair: torch.equal(pair[0], pair[1]))(
    lambda ws: (_rate_alpha(_nan_at((1, slice(6, None))), frame_period=40.0),
                _rate_alpha(_alpha(2, 10), frame_period=40.0)))
clear("alpha_pred int64", "rate_alpha", ValueError,
      r"alpha_pred must be a floating-point tensor, got a tensor of dtype torch.int64"
      r".*\.float\(\)")(
    lambda ws: _rate_alpha(torch.ones(2, 10, dtype=torch.long), frame_period=40.0))
clear("alpha_pred a list", "rate_alpha", ValueError,
      r"alpha_pred must be a floating-point tensor, got list")(
    lambda ws: _rate_alpha([[0.5] * 10] * 2, frame_period=40.0))
correct("alpha_pred float16", "rate_alpha", lambda alpha: _counts(alpha, LENGTHS, 40.0))(
    lambda ws: _rate_alpha(_alpha(2, 10, dtype=torch.float16), frame_period=40.0))
correct("alpha_pred bfloat16, lam", "rate_alpha",
        lambda alpha: alpha.dtype == torch.float64 and bool((alpha[1, 6:] == 0).all()))(
    lambda ws: _rate_alpha(_alpha(2, 10, dtype=torch.bfloat16), lam=0.5))
clear("alpha_pred on the meta device", "rate_alpha", ValueError,
      r"alpha_pred is on the meta device")(
    lambda ws: _rate_alpha(torch.rand(2, 10, device="meta"), frame_period=40.0))
clear("lengths on the meta device", "rate_alpha", ValueError, r"lengths is on the meta device")(
    lambda ws: _rate_alpha(_alpha(2, 10), LENGTHS.to("meta"), frame_period=40.0))
clear("alpha_pred 1-D", "rate_alpha", ValueError, r"alpha_pred must be \(batch, time\)")(
    lambda ws: _rate_alpha(_alpha(10), torch.tensor([10]), frame_period=40.0))
correct("frame_period a 0-d tensor", "rate_alpha", lambda pair: torch.equal(*pair))(
    lambda ws: (_rate_alpha(_alpha(2, 10), frame_period=torch.tensor(60.0)),
                _rate_alpha(_alpha(2, 10), frame_period=60.0)))
clear("frame_period a 2-element tensor", "rate_alpha", ValueError, r"number of milliseconds")(
    lambda ws: _rate_alpha(_alpha(2, 10), frame_period=torch.tensor([60.0, 40.0])))
clear("frame_period below the input period", "rate_alpha", ValueError,
      r"frame_period 10 ms is outside the periods CIF reaches")(
    lambda ws: _rate_alpha(_alpha(2, 10), frame_period=10.0))
clear("frame_period NaN", "rate_alpha", ValueError, r"frame_period must be a finite number")(
    lambda ws: _rate_alpha(_alpha(2, 10), frame_period=math.nan))
clear("frame_period negative", "rate_alpha", ValueError, r"frame_period must be .*> 0")(
    lambda ws: _rate_alpha(_alpha(2, 10), frame_period=-40.0))
clear("frame_period a string", "rate_alpha", ValueError,
      r"frame_period must be a number of milliseconds.*'40'")(
    lambda ws: _rate_alpha(_alpha(2, 10), frame_period="40"))
clear("frame_period and lam both", "rate_alpha", ValueError,
      r"set only one of frame_period and lam")(
    lambda ws: _rate_alpha(_alpha(2, 10), frame_period=40.0, lam=0.5))
clear("no rate at all", "rate_alpha", ValueError, r"no rate given: set frame_period")(
    lambda ws: _rate_alpha(_alpha(2, 10)))
clear("lam above 2", "rate_alpha", ValueError, r"lam must be in \[0, 2\]")(
    lambda ws: _rate_alpha(_alpha(2, 10), lam=2.5))
clear("lam a bool", "rate_alpha", ValueError, r"lam must be a number in \[0, 2\], got True")(
    lambda ws: _rate_alpha(_alpha(2, 10), lam=True))
clear("lengths longer than the tensor", "rate_alpha", ValueError,
      r"lengths has a value 11 longer than the tensor's time axis \(10\)")(
    lambda ws: _rate_alpha(_alpha(2, 10), torch.tensor([11, 6]), frame_period=40.0))
clear("lengths negative", "rate_alpha", ValueError, r"lengths must be >= 0")(
    lambda ws: _rate_alpha(_alpha(2, 10), torch.tensor([10, -1]), frame_period=40.0))
clear("lengths float", "rate_alpha", ValueError, r"lengths must be an integer tensor, got dtype")(
    lambda ws: _rate_alpha(_alpha(2, 10), LENGTHS.float(), frame_period=40.0))
clear("lengths of another batch", "rate_alpha", ValueError,
      r"lengths must be a \(batch=2,\) tensor, got \(3,\)")(
    lambda ws: _rate_alpha(_alpha(2, 10), torch.tensor([10, 6, 4]), frame_period=40.0))
correct("empty batch (B = 0)", "rate_alpha", lambda alpha: tuple(alpha.shape) == (0, 10))(
    lambda ws: _rate_alpha(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long),
                           frame_period=40.0))
correct("zero-length utterances (T = 0)", "rate_alpha", lambda alpha: tuple(alpha.shape) == (2, 0))(
    lambda ws: _rate_alpha(torch.zeros(2, 0), torch.zeros(2, dtype=torch.long), lam=0.5))
correct("one utterance of length 0 in a batch", "rate_alpha+cif",
        lambda alpha: _counts(alpha, torch.tensor([10, 0]), 60.0))(
    lambda ws: _rate_alpha(_alpha(2, 10), torch.tensor([10, 0]), frame_period=60.0))


def _cif(x=None, alpha=None, lengths=LENGTHS, **kw):
    from espnet_ofa.compression import cif

    x = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0)) if x is None else x
    return cif(x, _alpha(2, 10) if alpha is None else alpha, lengths, **kw)


clear("x integer", "cif", ValueError, r"x must be a floating-point tensor, got dtype torch.int64")(
    lambda ws: _cif(torch.ones(2, 10, 3, dtype=torch.long)))
clear("x 2-D", "cif", ValueError, r"x must be \(batch, time, channels\), got shape \(2, 10\)")(
    lambda ws: _cif(torch.ones(2, 10)))
clear("alpha of another shape", "cif", ValueError,
      r"alpha has shape \(2, 9\) but the input frames need \(2, 10\)")(
    lambda ws: _cif(alpha=_alpha(2, 9)))
clear("alpha NaN in a valid frame", "cif", ValueError, r"alpha contains NaN or Inf")(
    lambda ws: _cif(alpha=_nan_at((0, 3))))
clear("alpha int32", "cif", ValueError, r"dtype torch.int32")(
    lambda ws: _cif(alpha=torch.ones(2, 10, dtype=torch.int32)))
clear("lengths longer than the tensor", "cif", ValueError, r"longer than the tensor's time axis")(
    lambda ws: _cif(lengths=torch.tensor([12, 6])))
clear("x on the meta device", "cif", ValueError, r"x is on the meta device")(
    lambda ws: _cif(torch.zeros(2, 10, 3, device="meta")))
clear("beta 0", "cif", ValueError, r"beta must be a positive finite number")(
    lambda ws: _cif(beta=0.0))
clear("tail_threshold above 1", "cif", ValueError, r"tail_threshold must be in \(0, 1\]")(
    lambda ws: _cif(tail_threshold=1.5))
correct("empty batch (B = 0)", "cif",
        lambda out: tuple(out.frames.shape) == (0, 0, 3) and out.lengths.numel() == 0)(
    lambda ws: _cif(torch.zeros(0, 10, 3), torch.zeros(0, 10), torch.zeros(0, dtype=torch.long)))
correct("zero-length time axis (T = 0)", "cif",
        lambda out: tuple(out.frames.shape) == (2, 0, 3) and out.lengths.tolist() == [0, 0])(
    lambda ws: _cif(torch.zeros(2, 0, 3), torch.zeros(2, 0), torch.zeros(2, dtype=torch.long)))
correct("NaN in x's padding", "cif", lambda out: bool(torch.isfinite(out.frames).all()))(
    lambda ws: _cif(torch.cat([torch.ones(2, 6, 3), torch.full((2, 4, 3), math.nan)], 1),
                    lengths=torch.tensor([6, 6])))


def _half_vs_float(ws):
    x = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0))
    alpha = _alpha(2, 10)
    return _cif(x.half(), alpha), _cif(x, alpha)


correct("x float16 on the CPU", "cif",
        lambda pair: torch.equal(pair[0].lengths, pair[1].lengths) and torch.allclose(
            pair[0].frames.float(), pair[1].frames, atol=1e-2))(_half_vs_float)


def _fixed(lengths, max_len, period):
    from espnet_ofa.compression import fixed_rate_alpha

    return fixed_rate_alpha(lengths, max_len, period)


clear("frame_period below the input period", "fixed_rate_alpha", ValueError,
      r"frame_period 15 ms is outside")(lambda ws: _fixed(LENGTHS, 10, 15.0))
clear("lengths longer than max_len", "fixed_rate_alpha", ValueError, r"longer than")(
    lambda ws: _fixed(torch.tensor([12, 6]), 10, 40.0))
correct("frame_period 40 ms", "fixed_rate_alpha", lambda a: _counts(a, LENGTHS, 40.0))(
    lambda ws: _fixed(LENGTHS, 10, 40.0))


def _for_lengths(output_lengths):
    from espnet_ofa.compression import alpha_for_lengths

    return alpha_for_lengths(_alpha(2, 10), LENGTHS, output_lengths)


clear("output_lengths above the input frames", "alpha_for_lengths", ValueError,
      r"output_lengths \[11, 3\] must be in \[1, frames\]")(
    lambda ws: _for_lengths(torch.tensor([11, 3])))
clear("unknown sampler mode", "RateSampler", ValueError, r"mode.*frame_period")(
    lambda ws: __import__("espnet_ofa.compression", fromlist=["RateSampler"]).RateSampler(
        mode="periods"))
clear("sampler low above high", "RateSampler", ValueError, r"low.*high")(
    lambda ws: __import__("espnet_ofa.compression", fromlist=["RateSampler"]).RateSampler(
        low=80, high=40))


# ============================================================================ checkpoints


def _load(path):
    from espnet_ofa.models.pretrained import load_student

    return load_student(path)


def _truncated(ws):
    ckpt = ws.checkpoint_copy()
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    return _load(ckpt)


def _corrupt(ws):
    ckpt = ws.checkpoint_copy()
    with zipfile.ZipFile(ckpt) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(ckpt.read_bytes())
    head = record.header_offset
    name_len = int.from_bytes(data[head + 26:head + 28], "little")
    extra_len = int.from_bytes(data[head + 28:head + 30], "little")
    start = head + 30 + name_len + extra_len + record.file_size // 2
    data[start:start + 64] = np.random.default_rng(0).integers(0, 256, 64, np.uint8).tobytes()
    ckpt.write_bytes(bytes(data))
    return _load(ckpt)


def _nonfinite(ws):
    from espnet_ofa.models.pretrained import save_student
    from espnet_ofa.models.student import build_student

    bad = build_student("tiny")
    bad.load_state_dict(ws.student.state_dict())
    with torch.no_grad():
        bad.transformer.layers[0].feed_forward.output_dense.weight[0, 0] = math.nan
    return _load(save_student(bad, ws.tmp() / "exp", preset="tiny"))


def _forward(ws, wav=None, lengths=None, **rate):
    wav_, lengths_ = ws.batch()
    with torch.no_grad():
        return ws.student(wav_ if wav is None else wav, lengths_ if lengths is None else lengths,
                          **(rate or {"frame_period": 40.0}))


def _frames(samples: int, period: float) -> int:
    t = (samples - 400) // 320 + 1
    return max(1, round(t * 20 / period))


S = "load_student"
clear("checkpoint missing", S, CheckpointError, r"does not exist; train one")(
    lambda ws: _load(ws.tmp() / "exp" / "valid.loss.best.pth"))
clear("checkpoint truncated", S, CheckpointError, r"(truncated|damaged).*(download|copy)")(
    _truncated)
clear("checkpoint with 64 corrupt bytes", S, CheckpointError,
      r"is damaged: .*fails its checksum.*again")(_corrupt)
clear("checkpoint with a NaN weight", S, CheckpointError,
      r"NaN or Inf \(transformer.layers.0.feed_forward.output_dense.weight\)")(_nonfinite)
clear("checkpoint empty", S, CheckpointError, r"is empty.*copy or download it again")(
    lambda ws: (lambda p: (p.write_bytes(b""), _load(p)))(ws.checkpoint_copy()))
clear("checkpoint a text file", S, CheckpointError, r"is not a torch checkpoint \(it holds text")(
    lambda ws: (lambda p: (p.write_text("weights\n"), _load(p)))(ws.checkpoint_copy()))
clear("checkpoint a directory", S, CheckpointError, r"is a directory.*give the .pth file")(
    lambda ws: _load(ws.checkpoint_copy().parent))
clear("checkpoint without config.yaml", S, CheckpointError, r"no config.yaml next to")(
    lambda ws: (lambda p: ((p.parent / "config.yaml").unlink(), _load(p)))(ws.checkpoint_copy()))
clear("checkpoint of an ESPnet ASR model", S, CheckpointError,
      r"not an ofa_ssl_train config \(no student_conf\)")(
    lambda ws: _load(ws.other_kind_checkpoint()))


def _weights_of_another_kind(ws):
    ckpt = ws.checkpoint_copy()
    torch.save({"encoder.w": torch.zeros(2)}, ckpt)
    return _load(ckpt)


clear("OFA config with weights of another model", S, CheckpointError,
      r"has no 'student.\*' weights: not an OFA model file")(_weights_of_another_kind)


def _other_preset(ws):
    ckpt = ws.checkpoint_copy()
    conf = yaml.safe_load((ckpt.parent / "config.yaml").read_text())
    conf["student_conf"]["embed_dim"] = conf["student_conf"]["embed_dim"] * 2
    (ckpt.parent / "config.yaml").write_text(yaml.safe_dump(conf))
    return _load(ckpt)


clear("checkpoint and config of different sizes", S, CheckpointError, r"does not match")(
    _other_preset)

M = "OFAStudent.forward"
clear("audio shorter than one frame", M, ValueError, r"utterance 0 has 100 samples.*Drop or pad")(
    lambda ws: _forward(ws, torch.zeros(1, 100), torch.tensor([100])))
clear("NaN audio", M, ValueError, r"utterance 0 contains \d+ NaN/Inf sample")(
    lambda ws: _forward(ws, torch.full((1, 16000), math.nan), torch.tensor([16000])))
clear("multi-channel audio (B, C, N)", M, ValueError, r"mixed down to mono")(
    lambda ws: _forward(ws, torch.zeros(1, 2, 16000), torch.tensor([16000])))
clear("int16 audio", M, ValueError, r"floating-point tensor, got torch.int16")(
    lambda ws: _forward(ws, torch.zeros(1, 16000, dtype=torch.int16), torch.tensor([16000])))
clear("wav_lengths longer than the batch", M, ValueError, r"exceeds the padded length 16000")(
    lambda ws: _forward(ws, torch.zeros(1, 16000), torch.tensor([20000])))
clear("empty batch", M, ValueError, r"the batch is empty")(
    lambda ws: _forward(ws, torch.zeros(0, 16000), torch.zeros(0, dtype=torch.long)))
clear("frame_period outside the trained range", M, ValueError,
      r"frame_period 150 ms is outside the range this model was trained for, \[20, 90\] ms")(
    lambda ws: _forward(ws, frame_period=150.0))
correct("float16 audio on the CPU (run in float32)", M,
        lambda pair: torch.equal(pair[0].last_hidden, pair[1].last_hidden))(
    lambda ws: (_forward(ws, ws.batch()[0].half()), _forward(ws, ws.batch()[0].half().float())))
clear("lam on a fixed-rate model", M, ValueError, r"lam needs the alpha predictor")(
    lambda ws: __import__("espnet_ofa.models.student", fromlist=["build_student"]).build_student(
        "tiny", compression="fixed")(*ws.batch(), lam=0.5))
correct("frame_period a 0-d tensor", M,
        lambda pair: torch.equal(pair[0].last_hidden, pair[1].last_hidden))(
    lambda ws: (_forward(ws, frame_period=torch.tensor(60.0)), _forward(ws, frame_period=60.0)))
correct("lengths per utterance at 60 ms", M,
        lambda out: out.lengths.tolist() == [_frames(16000, 60), _frames(12000, 60)])(
    lambda ws: _forward(ws, frame_period=60.0))


# ============================================================================ OFA frontend


def _frontend(ws, **conf):
    from espnet_ofa.frontend.ofa import OFAFrontend

    conf.setdefault("model", str(ws.checkpoint))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OFAFrontend(**conf)


def _frontend_forward(ws, wav, lengths, **conf):
    frontend = _frontend(ws, frame_period=40.0, **conf).eval()
    with torch.no_grad():
        return frontend(wav, lengths)


F = "OFAFrontend"
clear("fs 8000", F, ValueError, r"fs=8000: OFA models read 16 kHz audio\. Resample")(
    lambda ws: _frontend(ws, fs=8000))
clear("fs '8k'", F, ValueError, r"fs='8k': OFA models read 16 kHz.*set fs: 16k")(
    lambda ws: _frontend(ws, fs="8k"))
clear("fs 'sixteen'", F, ValueError, r"fs='sixteen' is not a sample rate \(use 16k\)")(
    lambda ws: _frontend(ws, fs="sixteen"))
clear("frame_period 150 (outside the trained range)", F, ValueError,
      r"frontend_conf: frame_period 150 ms is outside the range this model was trained for")(
    lambda ws: _frontend(ws, frame_period=150))
clear("frame_period 10", F, ValueError, r"frame_period 10 ms is outside")(
    lambda ws: _frontend(ws, frame_period=10))
clear("frame_period 'fast'", F, ValueError, r"frame_period must be a number of milliseconds")(
    lambda ws: _frontend(ws, frame_period="fast"))
clear("frame_period NaN", F, ValueError, r"frame_period must be a finite number")(
    lambda ws: _frontend(ws, frame_period=math.nan))
clear("model missing from frontend_conf", F, CheckpointError, r"frontend_conf.model is required")(
    lambda ws: _frontend(ws, model=None))
clear("model .pth that does not exist", F, CheckpointError,
      r"OFA checkpoint .* does not exist .*fix frontend_conf.model")(
    lambda ws: _frontend(ws, model=str(ws.tmp() / "nope.pth")))
clear("model .zip that does not exist", F, ZooError, r"model .*nope.zip' not found")(
    lambda ws: _frontend(ws, model=str(ws.tmp() / "nope.zip")))
clear("model of another kind (ESPnet ASR)", F, CheckpointError, r"not an ofa_ssl_train config")(
    lambda ws: _frontend(ws, model=str(ws.other_kind_checkpoint())))
clear("layer 99", F, ValueError, r"layer 99 does not exist.*use one of")(
    lambda ws: _frontend(ws, layer=99))
clear("autocast 'int8'", F, ValueError, r"autocast='int8': use bfloat16")(
    lambda ws: _frontend(ws, autocast="int8"))
clear("rate_cost without a learnable rate", F, ValueError, r"only applies to a learnable rate")(
    lambda ws: _frontend(ws, rate_cost=0.1))
clear("set_rate 150", F, ValueError, r"set_rate: frame_period 150 ms is outside")(
    lambda ws: _frontend(ws).set_rate(frame_period=150))
clear("empty audio", F, ValueError, r"utterance 1 is empty")(
    lambda ws: _frontend_forward(ws, torch.zeros(2, 16000), torch.tensor([16000, 0])))
clear("audio too short", F, ValueError, r"utterance 0 has 200 samples.*Drop or pad")(
    lambda ws: _frontend_forward(ws, torch.zeros(1, 200), torch.tensor([200])))
clear("Inf audio", F, ValueError, r"NaN/Inf sample")(
    lambda ws: _frontend_forward(ws, torch.full((1, 16000), math.inf), torch.tensor([16000])))
clear("multi-channel audio (B, N, C)", F, ValueError, r"mixed down to mono")(
    lambda ws: _frontend_forward(ws, torch.zeros(1, 16000, 2), torch.tensor([16000])))
correct("lengths at 40 ms", F,
        lambda out: out[1].tolist() == [_frames(16000, 40), _frames(12000, 40)]
        and out[0].shape[1] == _frames(16000, 40))(
    lambda ws: _frontend_forward(ws, *ws.batch()))


def _env_frontend(ws, decoding=False, **values):
    from espnet_ofa.frontend.ofa import decoding_build

    with env(ESPNET_OFA_FRAME_PERIOD=None, ESPNET_OFA_LAM=None), env(**values):
        with decoding_build() if decoding else contextlib.nullcontext():
            return _frontend(ws, frame_period=60.0).eval()


clear("ESPNET_OFA_FRAME_PERIOD=abc", F, ValueError,
      r"ESPNET_OFA_FRAME_PERIOD='abc' is not a number; unset it")(
    lambda ws: _env_frontend(ws, ESPNET_OFA_FRAME_PERIOD="abc"))
clear("ESPNET_OFA_FRAME_PERIOD=150", F, ValueError,
      r"ESPNET_OFA_FRAME_PERIOD/ESPNET_OFA_LAM: frame_period 150 ms is outside")(
    lambda ws: _env_frontend(ws, ESPNET_OFA_FRAME_PERIOD="150"))
clear("ESPNET_OFA_FRAME_PERIOD=150 when decoding", F, ValueError,
      r"ESPNET_OFA_FRAME_PERIOD/ESPNET_OFA_LAM: frame_period 150 ms is outside")(
    lambda ws: _env_frontend(ws, decoding=True, ESPNET_OFA_FRAME_PERIOD="150"))
clear("ESPNET_OFA_FRAME_PERIOD=40ms", F, ValueError, r"'40ms' is not a number")(
    lambda ws: _env_frontend(ws, ESPNET_OFA_FRAME_PERIOD="40ms"))
clear("ESPNET_OFA_LAM=3", F, ValueError, r"ESPNET_OFA_LAM: lam must be in \[0, 2\]")(
    lambda ws: _env_frontend(ws, ESPNET_OFA_LAM="3"))
clear("ESPNET_OFA_FRAME_PERIOD and ESPNET_OFA_LAM both", F, ValueError,
      r"set only one of frame_period and lam")(
    lambda ws: _env_frontend(ws, ESPNET_OFA_FRAME_PERIOD="40", ESPNET_OFA_LAM="0.5"))
correct("ESPNET_OFA_FRAME_PERIOD=40 when decoding", F,
        lambda frontend: frontend.current_rate().frame_period == 40.0)(
    lambda ws: _env_frontend(ws, decoding=True, ESPNET_OFA_FRAME_PERIOD="40"))
correct("ESPNET_OFA_FRAME_PERIOD=40 when training (ignored)", F,
        lambda frontend: frontend.current_rate().frame_period == 60.0)(
    lambda ws: _env_frontend(ws, ESPNET_OFA_FRAME_PERIOD="40"))


def _espnet_frontend(ws, **conf):
    """``frontend: ofa`` as ESPnet's ASR task builds it (its ClassChoices)."""
    import espnet_ofa
    from espnet2.tasks.asr import frontend_choices

    espnet_ofa.register()
    cls = frontend_choices.get_class("ofa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**{"model": str(ws.checkpoint), "frame_period": 40, **conf})


T = "frontend: ofa (espnet2 asr)"
clear("fs 8k", T, ValueError, r"OFA models read 16 kHz audio")(
    lambda ws: _espnet_frontend(ws, fs="8k"))
clear("frame_period 95", T, ValueError, r"frame_period 95 ms is outside")(
    lambda ws: _espnet_frontend(ws, frame_period=95))
correct("fs 16k, frame_period 40", T, lambda frontend: frontend.output_size() > 0)(
    lambda ws: _espnet_frontend(ws, fs="16k"))


# ============================================================================ data dirs


def _validate(root, **kw):
    from espnet_ofa.data import validate_data_dir

    kw.setdefault("optional", ("text", "utt2spk", "spk2utt", "segments", "utt2gender"))
    return validate_data_dir(root, **kw)


def _fix(root):
    from espnet_ofa.data import fix_data_dir

    return fix_data_dir(root, backup=False)


def _keys(root, name):
    return [line.split()[0] for line in (root / name).read_text(encoding="utf-8").splitlines()]


WAVS = "a {dir}/a.wav\nb {dir}/b.wav\n"
D = "validate_data_dir"
clear("a line with only an id", D, DataDirError, r"wav.scp:2: .*(malformed|no value)")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "a {dir}/a.wav\nb\n"}, ("a.wav",))))
clear("an id split at a non-breaking space", D, DataDirError, r"wav.scp:1: id .* contains U\+00A0")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "a\u00a0x {dir}/a.wav\n"}, ("a.wav",))))
clear("a missing audio file", D, DataDirError, r"b.wav.*(does not exist|missing|not found)")(
    lambda ws: _validate(ws.data_dir({"wav.scp": WAVS}, ("a.wav",))))
clear("lines not sorted", D, DataDirError, r"not sorted.*fix_data_dir")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "b {dir}/b.wav\na {dir}/a.wav\n"},
                                     ("a.wav", "b.wav"))))
clear("an id listed twice", D, DataDirError, r"wav.scp:2: .*duplicate")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "a {dir}/a.wav\na {dir}/a.wav\n"}, ("a.wav",))))
clear("text without an utterance of wav.scp", D, DataDirError, r"text.*\bb\b")(
    lambda ws: _validate(ws.data_dir({"wav.scp": WAVS, "text": "a hello\n"}, ("a.wav", "b.wav"))))
clear("utt2gender out of sync", D, DataDirError, r"utt2gender.*\bb\b")(
    lambda ws: _validate(ws.data_dir({"wav.scp": WAVS, "utt2gender": "a f\n"},
                                     ("a.wav", "b.wav"))))
clear("spk2utt not the inverse of utt2spk", D, DataDirError, r"spk2utt")(
    lambda ws: _validate(ws.data_dir({"wav.scp": WAVS, "utt2spk": "a s1\nb s1\n",
                                      "spk2utt": "s1 a\n"}, ("a.wav", "b.wav"))))
clear("an empty transcript", D, DataDirError, r"text:2: .*empty")(
    lambda ws: _validate(ws.data_dir({"wav.scp": WAVS, "text": "a hi\nb\n"}, ("a.wav", "b.wav"))))
clear("a segment end 'abc'", D, DataDirError, r"segments:1: malformed segment .*not numbers")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "rec {dir}/a.wav\n",
                                      "segments": "u1 rec 0.0 abc\n"}, ("a.wav",))))
clear("a segment that ends before it starts", D, DataDirError, r"segments:1: .*end")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "rec {dir}/a.wav\n",
                                      "segments": "u1 rec 0.4 0.2\n"}, ("a.wav",))))
clear("a segment past the end of its audio", D, DataDirError, r"segments:1.*0.500 s long")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "rec {dir}/a.wav\n",
                                      "segments": "u1 rec 0.0 3.0\n"}, ("a.wav",))))
clear("a segment of an unknown recording", D, DataDirError, r"segments:1: .*rec2")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "rec {dir}/a.wav\n",
                                      "segments": "u1 rec2 0.0 0.2\n"}, ("a.wav",))))
clear("text in Latin-1", D, DataDirError, r"text:1: not UTF-8.*iconv")(
    lambda ws: _validate((lambda root: ((root / "text").write_bytes("a caf\xe9\nb x\n".encode(
        "latin-1")), root)[1])(ws.data_dir({"wav.scp": WAVS}, ("a.wav", "b.wav")))))
clear("directory missing", D, DataDirError, r"(not found|does not exist)")(
    lambda ws: _validate(ws.tmp() / "no_such_dir"))
clear("wav.scp empty", D, DataDirError, r"wav.scp.*empty")(
    lambda ws: _validate(ws.data_dir({"wav.scp": ""})))
clear("audio at 8 kHz where 16 kHz is asked", D, DataDirError, r"8000 Hz.*16000")(
    lambda ws: _validate((lambda root: (ws.wav(root / "a.wav", rate=8000), root)[1])(
        ws.data_dir({"wav.scp": "a {dir}/a.wav\n"})), sample_rate=16000))

X = "fix_data_dir"


def _fix_then(ws, files, wavs=("a.wav", "b.wav", "c.wav")):
    root = ws.data_dir(files, wavs)
    report = _fix(root)
    return root, report


correct("utterance dropped from every per-utterance file", X,
        lambda r: all(_keys(r[0], n) == ["a", "c"] for n in ("wav.scp", "text", "utt2gender")))(
    lambda ws: _fix_then(ws, {"wav.scp": "a {dir}/a.wav\nb {dir}/b.wav\nc {dir}/c.wav\n",
                              "text": "a x\nc z\n", "utt2gender": "a f\nb m\nc f\n"}))
correct("segment with end 'abc' dropped, the result validates", X,
        lambda r: _keys(r[0], "segments") == ["u1"] and _validate(
            r[0], optional=("segments", "text")).num_utterances == 1)(
    lambda ws: _fix_then(ws, {"wav.scp": "rec {dir}/a.wav\n",
                              "segments": "u1 rec 0.0 0.2\nu2 rec 0.2 abc\n",
                              "text": "u1 x\nu2 y\n"}, ("a.wav",)))
correct("id with a non-breaking space dropped, not split", X,
        lambda r: _keys(r[0], "wav.scp") == ["b"])(
    lambda ws: _fix_then(ws, {"wav.scp": "a\u00a0x {dir}/a.wav\nb {dir}/b.wav\n"}))
correct("unsorted lines sorted, spk2utt rebuilt", X,
        lambda r: _keys(r[0], "wav.scp") == ["a", "b"]
        and (r[0] / "spk2utt").read_text() == "s1 a b\n")(
    lambda ws: _fix_then(ws, {"wav.scp": "b {dir}/b.wav\na {dir}/a.wav\n",
                              "utt2spk": "b s1\na s1\n"}))
clear("directory missing", X, DataDirError, r"data directory not found")(
    lambda ws: _fix(ws.tmp() / "no_such_dir"))
clear("no utterance in every file", X, DataDirError, r"no utterance is present in every file")(
    lambda ws: _fix_then(ws, {"wav.scp": "a {dir}/a.wav\n", "text": "b x\n"}))

W = "load_audio / check_waveform"


def _check_waveform(wav, rate=16000):
    from espnet_ofa.data import check_waveform

    return check_waveform(wav, rate)


def _load_audio(path, **kw):
    from espnet_ofa.data import load_audio

    return load_audio(path, **kw)


correct("8 kHz file resampled to 16 kHz", W,
        lambda out: out[1] == 8000 and out[0].shape[0] == 16000)(
    lambda ws: _load_audio(ws.wav(ws.tmp() / "a.wav", seconds=1.0, rate=8000)))
clear("stereo file", W, ValueError, r"2 channels; expected mono.*mix_to_mono")(
    lambda ws: _load_audio(ws.wav(ws.tmp() / "a.wav", channels=2)))
clear("missing file", W, (ValueError, FileNotFoundError), r"audio file not found: .*a\.wav")(
    lambda ws: _load_audio(ws.tmp() / "a.wav"))
clear("a text file named .wav", W, ValueError, r"a.wav.*(not (readable )?audio|convert)")(
    lambda ws: _load_audio((lambda p: (p.write_text("hello\n"), p)[1])(ws.tmp() / "a.wav")))
clear("8 kHz waveform", W, ValueError,
      r"wav is at 8000 Hz but the model needs 16000 Hz\. Resample")(
    lambda ws: _check_waveform(torch.zeros(8000), 8000))
clear("stereo waveform (2, N)", W, ValueError, r"2 channels, but mono is needed")(
    lambda ws: _check_waveform(torch.zeros(2, 16000)))
clear("empty waveform", W, ValueError, r"wav is empty \(0 samples\)")(
    lambda ws: _check_waveform(torch.zeros(0)))
clear("NaN waveform", W, ValueError, r"wav contains 1 NaN/Inf sample")(
    lambda ws: _check_waveform(torch.cat([torch.zeros(800), torch.tensor([math.nan])])))
clear("waveform shorter than one frame", W, ValueError, r"wav has 100 samples .*at least 400")(
    lambda ws: _check_waveform(torch.zeros(100)))

# ============================================================================ speechocean762

O = "speechocean762 prepare"


def _prepare(root: Path, ws):
    from espnet_ofa.recipe.speechocean762 import prepare

    with contextlib.redirect_stdout(io.StringIO()):
        return prepare(root, ws.tmp() / "data", n_dev_speakers=1, download=False)


def _corpus_with(ws, change: Callable[[Path], None]):
    root = ws.corpus()
    change(root)
    return _prepare(root, ws)


def _first_wav(root: Path) -> Path:
    return root / first_line(root / "train" / "wav.scp")[1]


correct("a few speakers of the release", O,
        lambda counts: counts["train"] == 4 and counts["dev"] == 2 and counts["test"] == 2)(
    lambda ws: _prepare(ws.corpus(), ws))
clear("missing WAV", O, SpeechOcean762Error, r"the audio of utterance \d+ .* is missing.*download")(
    lambda ws: _corpus_with(ws, lambda root: _first_wav(root).unlink()))
clear("a wav.scp path outside the corpus", O, SpeechOcean762Error,
      r"points to '\.\./outside.WAV', outside the corpus.*restore the released wav.scp")(
    lambda ws: _corpus_with(ws, lambda root: edit(
        root / "train" / "wav.scp", first_line(root / "train" / "wav.scp")[1],
        "../outside.WAV")))
clear("an unknown character in a transcript", O, SpeechOcean762Error,
      r"text:1: utterance \d+ has the character '3'")(
    lambda ws: _corpus_with(ws, lambda root: edit(
        root / "train" / "text", first_line(root / "train" / "text")[1], "3")))
clear("a speaker in both train and test", O, SpeechOcean762Error,
      r"speaker \d+ is in both .*train and .*test.*speaker-disjoint")(
    lambda ws: _corpus_with(ws, lambda root: _move_speaker(root)))
clear("no corpus", O, SpeechOcean762Error, r"no speechocean762 in .*Set SPEECHOCEAN762")(
    lambda ws: _prepare(ws.tmp(), ws))
clear("resource/text-phone missing", O, SpeechOcean762Error,
      r"text-phone not found: the release is incomplete")(
    lambda ws: _corpus_with(ws, lambda root: (root / "resource" / "text-phone").unlink()))
clear("text without a line of wav.scp", O, SpeechOcean762Error, r"text has no line for \d+")(
    lambda ws: _corpus_with(ws, lambda root: _drop_first_line(root / "train" / "text")))
clear("an age that is not a number", O, SpeechOcean762Error, r"spk2age: an age is not a number")(
    lambda ws: _corpus_with(ws, lambda root: edit(
        root / "train" / "spk2age", "\t" + first_line(root / "train" / "spk2age")[1],
        "\tsix")))
clear("an unknown phone", O, SpeechOcean762Error, r"text-phone:1: unknown phone 'QQ'")(
    lambda ws: _corpus_with(ws, lambda root: edit(
        root / "resource" / "text-phone", "\t", "\tQQ_B ")))


def _drop_first_line(path: Path) -> None:
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(True)[1:]),
                    encoding="utf-8")


def _move_speaker(root: Path) -> None:
    """Relabel the test speaker's utterances as a train speaker's (ages agree)."""
    test_spk = first_line(root / "test" / "utt2spk")[1]
    train_spk = first_line(root / "train" / "utt2spk")[1]
    path = root / "test" / "utt2spk"
    path.write_text(path.read_text().replace(f" {test_spk}", f" {train_spk}"))
    ages = root / "test" / "spk2age"
    ages.write_text(ages.read_text() + f"{train_spk}\t10\n")


# ============================================================================ zoo

Z = "zoo"


def _download(name, **kw):
    from espnet_ofa.zoo import download_and_unpack

    return download_and_unpack(str(name), **kw)


def _published(ws):
    from espnet_ofa.zoo import publish

    zoo = ws.tmp() / "zoo"
    publish(ws.archive, str(zoo), name="tiny_ofa")
    return zoo


def _bad_sha(ws):
    zoo = _published(ws)
    index = zoo / "index.yaml"
    conf = yaml.safe_load(index.read_text())
    conf["tiny_ofa"]["sha256"] = "0" * 64
    index.write_text(yaml.safe_dump(conf))
    return _download("tiny_ofa", zoos=[zoo], cachedir=ws.tmp())


def _deleted_pth(ws):
    from espnet_ofa.zoo import resolve_ofa_checkpoint

    cache = ws.tmp()
    first = resolve_ofa_checkpoint(str(ws.archive), cachedir=cache)
    first.unlink()
    return first, resolve_ofa_checkpoint(str(ws.archive), cachedir=cache)


def _entry_file_deleted(ws):
    from espnet_ofa.zoo import locate

    zoo = _published(ws)
    (zoo / "tiny_ofa.zip").unlink()
    return locate("tiny_ofa", zoos=[zoo])


def _truncated_archive(ws):
    path = ws.tmp() / "ofa.zip"
    data = ws.archive.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return _download(path, cachedir=ws.tmp())


clear("a name that is nowhere", Z, ZooError, r"model 'no_such_model' not found.*publish it")(
    lambda ws: _download("no_such_model", zoos=[ws.tmp()], cachedir=ws.tmp()))
clear("a zoo entry with a wrong sha256", Z, ZooError, r"sha256.*(download|publish)")(_bad_sha)
clear("a zoo entry whose file was deleted", Z, ZooError,
      r"'tiny_ofa' is listed in .*index.yaml but its file .* is missing.*publish the model again")(
    _entry_file_deleted)
correct("a cache whose unpacked .pth was deleted", Z,
        lambda pair: pair[0] == pair[1] and pair[1].is_file())(_deleted_pth)
clear("a truncated archive", Z, ZooError, r"truncated.*download")(_truncated_archive)
clear("an archive that is not a zip", Z, ZooError, r"not a zip|not a packed model|truncated")(
    lambda ws: _download((lambda p: (p.write_text("hello\n"), p)[1])(ws.tmp() / "m.zip"),
                         cachedir=ws.tmp()))
clear("a folder given as a model", Z, ZooError, r"is a directory, not a model")(
    lambda ws: _download(ws.tmp(), cachedir=ws.tmp()))
clear("publish under a name with a slash", Z, ZooError, r"invalid model name.*--name")(
    lambda ws: __import__("espnet_ofa.zoo", fromlist=["publish"]).publish(
        ws.archive, str(ws.tmp() / "zoo"), name="../x"))
clear("pack a checkpoint with a NaN weight", Z, CheckpointError, r"NaN or Inf")(
    lambda ws: _pack_nonfinite(ws))
clear("an ASR archive where an OFA model is expected", Z, ZooError,
      r"(no OFA model|not an OFA|ofa_model_file)")(lambda ws: _resolve_downstream(ws))


def _pack_nonfinite(ws):
    from espnet_ofa.models.pretrained import save_student
    from espnet_ofa.models.student import build_student
    from espnet_ofa.zoo import pack_ofa_ssl

    bad = build_student("tiny")
    bad.load_state_dict(ws.student.state_dict())
    with torch.no_grad():
        bad.feature_projection.projection.weight[0, 0] = math.inf
    tmp = ws.tmp()
    ckpt = save_student(bad, tmp / "exp", preset="tiny")
    with contextlib.chdir(tmp):
        return pack_ofa_ssl(ckpt.parent / "config.yaml", ckpt, tmp / "bad.zip")


def _resolve_downstream(ws):
    from espnet2.main_funcs.pack_funcs import pack

    from espnet_ofa.zoo import resolve_ofa_checkpoint

    ckpt = ws.other_kind_checkpoint()
    out = ckpt.parents[2] / "asr.zip"
    with contextlib.chdir(ckpt.parents[2]):
        pack(files={"asr_model_file": "exp/asr/valid.loss.best.pth"},
             yaml_files={"asr_train_config": "exp/asr/config.yaml"}, outpath=out)
    return resolve_ofa_checkpoint(str(out), cachedir=ws.tmp())


# ============================================================================ s3prl, HF, espnet3


def _upstream(ws, model=None, **extra):
    from espnet_ofa.integrations.s3prl import ofa_local

    return ofa_local(str(model or ws.checkpoint), **extra)


U = "s3prl ofa_local"
clear("a model file that is not OFA", U, CheckpointError,
      r"ofa_local path_or_url=.*not an ofa_ssl_train config")(
    lambda ws: _upstream(ws, ws.other_kind_checkpoint(), frame_period=40))
clear("frame_period 150", U, ValueError, r"frame_period 150 ms is outside the range")(
    lambda ws: _upstream(ws, frame_period=150))
clear("sample_rate 8000", U, ValueError, r"sample_rate=8000: OFA models read 16000 Hz.*resample")(
    lambda ws: _upstream(ws, frame_period=40, sample_rate=8000))
clear("frame_period not a whole number of samples", U, ValueError,
      r"frame_period 40.03 ms is 640.48 samples.*whole number")(
    lambda ws: _upstream(ws, frame_period=40.03))
clear("no rate", U, ValueError, r"needs extra_conf \{frame_period: P\}")(lambda ws: _upstream(ws))
clear("lam 2 (no finite period)", U, ValueError, r"lam=2 has no finite frame period")(
    lambda ws: _upstream(ws, lam=2.0))
clear("audio shorter than one frame", U, ValueError, r"has 100 samples.*Drop or pad")(
    lambda ws: _upstream(ws, frame_period=40)([torch.zeros(100)]))
clear("an empty list of waveforms", U, ValueError, r"(empty|no waveform)")(
    lambda ws: _upstream(ws, frame_period=40)([]))
correct("lengths by s3prl's rule at 40 ms", U,
        lambda out: out["hidden_states"][0].shape[1] == math.ceil(16000 / 640))(
    lambda ws: _upstream(ws, frame_period=40)([torch.zeros(16000), torch.zeros(9000)]))

H = "Hugging Face export"


def _export(ws, model, out=None):
    from espnet_ofa.export.huggingface import export_huggingface

    return export_huggingface(model, out or ws.tmp() / "hf")


def _hf_model(ws):
    from espnet_ofa.export.hf_modeling import OFAModel

    def build():
        return OFAModel.from_pretrained(_export(ws, str(ws.checkpoint))).eval()
    return ws._once("hf_model", build)


def _hf(ws, wav=None, **kw):
    with torch.no_grad():
        return _hf_model(ws)(ws.batch(1.0, 1)[0] if wav is None else wav, **kw)


clear("a model file that is not OFA", H, CheckpointError, r"not an ofa_ssl_train config")(
    lambda ws: _export(ws, str(ws.other_kind_checkpoint())))
clear("an output directory that exists", H, FileExistsError, r"exists; choose a new --out")(
    lambda ws: _export(ws, str(ws.checkpoint), ws.tmp()))
clear("sampling_rate 8000", H, ValueError, r"sampling_rate=8000: this OFA model reads 16000 Hz")(
    lambda ws: _hf(ws, sampling_rate=8000, frame_period=40.0))
clear("frame_period 150", H, ValueError, r"frame_period 150 ms is outside the range")(
    lambda ws: _hf(ws, frame_period=150.0))
clear("multi-channel input", H, ValueError, r"mix multi-channel audio down to mono")(
    lambda ws: _hf(ws, torch.zeros(1, 2, 16000), frame_period=40.0))
correct("exported model at 60 ms", H,
        lambda out: out.output_lengths.tolist() == [_frames(16000, 60)])(
    lambda ws: _hf(ws, frame_period=60.0))

T3 = "espnet3"


def _espnet3_frontend(ws, **conf):
    import espnet3.systems.esp2_asr.task as task

    import espnet_ofa

    espnet_ofa.register()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return task.frontend_choices.get_class("ofa")(
            **{"model": str(ws.checkpoint), "frame_period": 40, **conf})


def _espnet3_dataset(ws, rate):
    from espnet_ofa.integrations.espnet3_data import DataDirDataset

    root = ws.data_dir({"wav.scp": "a {dir}/a.wav\n", "text": "a one\n"})
    ws.wav(root / "a.wav", seconds=1.0, rate=rate)
    return DataDirDataset(root)[0]


clear("a model file that is not OFA", T3, CheckpointError, r"not an ofa_ssl_train config")(
    lambda ws: _espnet3_frontend(ws, model=str(ws.other_kind_checkpoint())))
clear("frame_period 150", T3, ValueError, r"frame_period 150 ms is outside")(
    lambda ws: _espnet3_frontend(ws, frame_period=150))
clear("fs 8k", T3, ValueError, r"OFA models read 16 kHz audio")(
    lambda ws: _espnet3_frontend(ws, fs="8k"))
correct("8 kHz audio in a data dir, resampled on load", T3,
        lambda item: item["speech"].shape == (16000,) and item["text"] == "one")(
    lambda ws: _espnet3_dataset(ws, 8000))
clear("best model of an experiment never trained", T3, FileNotFoundError,
      r"no Lightning checkpoint; run the train stage first")(
    lambda ws: __import__("espnet_ofa.integrations.espnet3_system",
                          fromlist=["export_best_model"]).export_best_model(ws.tmp()))


# ============================================================================ commands


def _cli(module: str, *args) -> Callable[[Workspace], str]:
    return lambda ws: run_command(f"espnet_ofa.bin.{module}", *[
        a(ws) if callable(a) else a for a in args])


C = "python -m espnet_ofa.bin"
clear("transcribe: a model that does not exist", C, CommandFailed,
      r"exit 2: error: model .*nope.zip' not found")(
    _cli("transcribe", "--model", lambda ws: ws.tmp() / "nope.zip",
         lambda ws: ws.wav(ws.tmp() / "a.wav")))
clear("transcribe: an audio file that does not exist", C, CommandFailed,
      r"exit 2: error: .*missing.wav.*does not exist")(
    _cli("transcribe", "--model", "m.zip", lambda ws: ws.tmp() / "missing.wav"))
clear("transcribe: --frame-period abc", C, CommandFailed,
      r"exit 2: .*argument --frame-period: invalid float value: 'abc'")(
    _cli("transcribe", "--model", "m.zip", "--frame-period", "abc", "a.wav"))
clear("transcribe: --task unknown", C, CommandFailed, r"exit 2: .*argument --task: invalid choice")(
    _cli("transcribe", "--model", "m.zip", "--task", "tts", "a.wav"))
clear("export_hf: a model that does not exist", C, CommandFailed,
      r"exit 2: error: OFA checkpoint .*nope.pth' does not exist")(
    _cli("export_hf", "--model", lambda ws: ws.tmp() / "nope.pth", "--out",
         lambda ws: ws.tmp() / "hf"))
clear("export_hf: no --out", C, CommandFailed,
      r"exit 2: .*the following arguments are required: --out")(
    _cli("export_hf", "--model", "m.pth"))
clear("export_hf: an ASR model", C, CommandFailed, r"exit 2: error: .*not an ofa_ssl_train config")(
    lambda ws: run_command("espnet_ofa.bin.export_hf", "--model", ws.other_kind_checkpoint(),
                           "--out", ws.tmp() / "hf"))
clear("pack_model: a model that does not exist", C, CommandFailed,
      r"exit 2: error: .*nope.pth.*does not exist")(
    lambda ws: run_command("espnet_ofa.bin.pack_model", "ssl", "--config",
                           ws.checkpoint.parent / "config.yaml", "--model",
                           ws.tmp() / "nope.pth", "--outpath", ws.tmp() / "o.zip"))
clear("pack_model: an unknown task", C, CommandFailed, r"exit 2: .*invalid choice: 'tts'")(
    _cli("pack_model", "tts", "--config", "c.yaml", "--model", "m.pth", "--outpath", "o.zip"))
clear("publish: an archive that does not exist", C, CommandFailed,
      r"exit 2: error: .*nope.zip.*(does not exist|not found)")(
    _cli("publish", lambda ws: ws.tmp() / "nope.zip", "--zoo", lambda ws: ws.tmp()))
clear("publish: a name with a slash", C, CommandFailed, r"exit 2: error: invalid model name")(
    lambda ws: run_command("espnet_ofa.bin.publish", ws.archive, "--zoo", ws.tmp(),
                           "--name", "a/b"))
clear("recipe speechocean762_data: no corpus", C, CommandFailed,
      r"exit 1: error: no speechocean762 in")(
    _cli("recipe", "speechocean762_data", "--speechocean762", lambda ws: ws.tmp(),
         "--data_dir", lambda ws: ws.tmp(), "--no_download"))
clear("recipe format: a source dir that does not exist", C, CommandFailed,
      r"exit 1: error: .*(not found|does not exist)")(
    _cli("recipe", "format", "--src", lambda ws: ws.tmp() / "nope", "--dst",
         lambda ws: ws.tmp() / "dst"))
clear("recipe token_list: a text file that does not exist", C, CommandFailed,
      r"exit 1: error: .*nope.*(not found|does not exist|No such file)")(
    _cli("recipe", "token_list", "--text", lambda ws: ws.tmp() / "nope", "--out",
         lambda ws: ws.tmp() / "tokens.txt"))
clear("recipe: an unknown subcommand", C, CommandFailed, r"exit 2: .*invalid choice: 'prepare'")(
    _cli("recipe", "prepare"))
clear("recipe filter: --min abc", C, CommandFailed, r"exit 2: .*--min: invalid float value")(
    _cli("recipe", "filter", "--src", "a", "--dst", "b", "--min", "abc"))
clear("probe: an OFA model that does not exist", C, CommandFailed,
      r"exit \d: error: .*nope.pth.*does not exist")(
    lambda ws: run_command("espnet_ofa.bin.probe", "--train_dir",
                           ws.data_dir({"wav.scp": "a {dir}/a.wav\n", "text": "a one\n"},
                                       ("a.wav",)),
                           "--test_dir", ws.tmp(), "--ofa_model", ws.tmp() / "nope.pth"))
clear("segment: a data dir that does not exist", C, CommandFailed,
      r"exit \d: error: .*nope.*(not found|does not exist)")(
    _cli("segment", "--data_dir", lambda ws: ws.tmp() / "nope", "--out",
         lambda ws: ws.tmp() / "b.txt"))


# ============================================================================ more corners
# Inputs one step away from the ones above: where a check exists for one shape of a
# mistake, its neighbours (another layout, another entry point) must meet it too.

clear("multi-channel waveform (C, N) in the list", U, ValueError, r"mono")(
    lambda ws: _upstream(ws, frame_period=40)([torch.zeros(2, 16000)]))
clear("NaN waveform", U, ValueError, r"NaN/Inf sample")(
    lambda ws: _upstream(ws, frame_period=40)([torch.full((16000,), math.nan)]))
clear("int16 waveform", U, ValueError, r"floating-point")(
    lambda ws: _upstream(ws, frame_period=40)([torch.zeros(16000, dtype=torch.int16)]))
clear("attention_mask all zeros", H, ValueError, r"(empty|no valid sample)")(
    lambda ws: _hf(ws, attention_mask=torch.zeros(1, 16000, dtype=torch.long), frame_period=40.0))
clear("attention_mask of another length", H, ValueError, r"attention_mask")(
    lambda ws: _hf(ws, attention_mask=torch.ones(1, 8000, dtype=torch.long), frame_period=40.0))
clear("integer input_values", H, ValueError, r"floating")(
    lambda ws: _hf(ws, torch.zeros(1, 16000, dtype=torch.int16), frame_period=40.0))
clear("frame_period and lam both", H, ValueError, r"set only one of frame_period and lam")(
    lambda ws: _hf(ws, frame_period=40.0, lam=0.5))
clear("wav lengths longer than the batch", F, ValueError, r"exceeds the padded length")(
    lambda ws: _frontend_forward(ws, torch.zeros(1, 16000), torch.tensor([32000])))
clear("pooled_period not a multiple of frame_period", F, ValueError, r"pooled_period")(
    lambda ws: _frontend(ws, frame_period=20.0, pooled_period=50.0))
clear("an unknown frontend_conf option", F, ValueError, r"unknown option\(s\) frame_rate")(
    lambda ws: __import__("espnet_ofa.frontend.ofa", fromlist=["ofa_options"]).ofa_options(
        {"model": "m.pth", "frame_rate": 40}))
clear("wav.scp starting with a UTF-8 byte-order mark", D, DataDirError,
      r"wav.scp:1: id .* starts with U\+FEFF \(a byte-order mark\).*without a BOM")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "\ufeff" + WAVS, "text": "a x\nb y\n"},
                                     ("a.wav", "b.wav"))))
clear("an id with a zero-width space", D, DataDirError, r"wav.scp:1: id .* contains U\+200B")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "a\u200bx {dir}/a.wav\n"}, ("a.wav",))))
correct("wav.scp with a byte-order mark: the mark removed, no utterance lost", X,
        lambda r: _keys(r[0], "wav.scp") == ["a", "b"] and _keys(r[0], "text") == ["a", "b"]
        and _validate(r[0]).num_utterances == 2)(
    lambda ws: _fix_then(ws, {"wav.scp": "\ufeff" + WAVS, "text": "a x\nb y\n"}))
clear("a negative segment start", D, DataDirError, r"segments:1: .*0 <= start")(
    lambda ws: _validate(ws.data_dir({"wav.scp": "rec {dir}/a.wav\n",
                                      "segments": "u1 rec -0.5 0.2\n"}, ("a.wav",))))
clear("utt2spk line without a speaker", D, DataDirError, r"utt2spk:2: ")(
    lambda ws: _validate(ws.data_dir({"wav.scp": WAVS, "utt2spk": "a s1\nb\n"},
                                     ("a.wav", "b.wav"))))
correct("text with Windows line endings", D,
        lambda r: r[0].num_utterances == 2 and __import__("espnet_ofa.data", fromlist=[
            "read_kaldi_table"]).read_kaldi_table(r[1] / "text") == {"a": "x", "b": "y"})(
    lambda ws: (lambda root: (_validate(root), root))(
        ws.data_dir({"wav.scp": WAVS, "text": "a x\r\nb y\r\n"}, ("a.wav", "b.wav"))))
clear("a data dir without text", T3, DataDirError, r"text.*(not found|missing|does not exist)")(
    lambda ws: __import__("espnet_ofa.integrations.espnet3_data", fromlist=["DataDirDataset"])
    .DataDirDataset(ws.data_dir({"wav.scp": "a {dir}/a.wav\n"}, ("a.wav",))))
clear("an utterance id in both train and test", O, SpeechOcean762Error, r"\d+.*(both|twice)")(
    lambda ws: _corpus_with(ws, lambda root: _copy_utterance_to_test(root)))
clear("an empty transcript", O, DataDirError, r"train/text:1: empty transcript for utterance")(
    lambda ws: _corpus_with(ws, lambda root: _blank_first_transcript(root)))
clear("an archive without meta.yaml", Z, ZooError, r"meta.yaml")(
    lambda ws: _download(_zip_with(ws, {"exp/x.pth": b"w"}), cachedir=ws.tmp()))
clear("an archive whose meta.yaml names a missing member", Z, ZooError,
      r"exp/ofa/valid.loss.best.pth")(
    lambda ws: _download(_zip_with(ws, {"meta.yaml": yaml.safe_dump({
        "files": {"ofa_model_file": "exp/ofa/valid.loss.best.pth"},
        "yaml_files": {"ofa_train_config": "exp/ofa/config.yaml"}}).encode(),
        "exp/ofa/config.yaml": b"student_conf: {}\n"}), cachedir=ws.tmp()))


def _zip_with(ws, members: Dict[str, bytes]) -> Path:
    path = ws.tmp() / "m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _blank_first_transcript(root: Path) -> None:
    path = root / "train" / "text"
    lines = path.read_text(encoding="utf-8").splitlines(True)
    path.write_text(lines[0].split()[0] + "\n" + "".join(lines[1:]), encoding="utf-8")


def _copy_utterance_to_test(root: Path) -> None:
    """The first train utterance listed in test too (with the test speaker)."""
    utt, wav = first_line(root / "train" / "wav.scp")[:2]
    spk = first_line(root / "test" / "utt2spk")[1]
    text = " ".join(first_line(root / "train" / "text")[1:])
    for name, value in (("wav.scp", wav), ("text", text), ("utt2spk", spk)):
        path = root / "test" / name
        path.write_text(f"{utt}\t{value}\n" + path.read_text())


def _config_is(ws, text: str):
    ckpt = ws.checkpoint_copy()
    (ckpt.parent / "config.yaml").write_text(text)
    return _load(ckpt)


clear("config with an unknown student_preset", S, (CheckpointError, ValueError),
      r"unknown student preset 'huge'")(
    lambda ws: _config_is(ws, "student_preset: huge\nstudent_conf: {}\n"))
clear("config.yaml a YAML list", S, CheckpointError, r"not an ofa_ssl_train config")(
    lambda ws: _config_is(ws, "- a\n- b\n"))
clear("config.yaml not YAML", S, CheckpointError, r"cannot read config")(
    lambda ws: _config_is(ws, "student_conf: [unclosed\n"))
clear("lam_to_period of lam 3", "compression", ValueError, r"lam must be in \[0, 2\]")(
    lambda ws: __import__("espnet_ofa.compression", fromlist=["lam_to_period"]).lam_to_period(3.0))
clear("expand with frames of another batch", "cif", ValueError, r"frames must be \(batch=2")(
    lambda ws: __import__("espnet_ofa.compression", fromlist=["expand"]).expand(
        torch.zeros(3, 10, 3), _cif()))
correct("x float64 with float16 alpha", "cif",
        lambda out: out.frames.dtype == torch.float64 and out.lengths.tolist() == [
            int(math.floor(float(_alpha(2, 10).half().double()[0].sum()) + 1e-4)),
            int(math.floor(float(_alpha(2, 10).half().double()[1, :6].sum()) + 1e-4))])(
    lambda ws: _cif(torch.randn(2, 10, 3, dtype=torch.float64), _alpha(2, 10).half()))
clear("benchmark_model: an unknown preset", C, CommandFailed,
      r"exit 2: .*unknown student preset 'huge'")(_cli("benchmark_model", "--preset", "huge"))
clear("decode: a train config that does not exist", C, CommandFailed,
      r"exit 1: error: .*nope.yaml.*(not found|does not exist)")(
    _cli("decode", "--train_config", lambda ws: ws.tmp() / "nope.yaml", "--model_file",
         lambda ws: ws.tmp() / "m.pth", "--data_dirs", lambda ws: ws.tmp(), "--out_dir",
         lambda ws: ws.tmp() / "out"))
clear("alpha_eval: a model that does not exist", C, CommandFailed,
      r"exit 1: error: .*nope.pth.*does not exist")(
    _cli("alpha_eval", "--data_dir", lambda ws: ws.tmp(), "--model",
         lambda ws: f"m={ws.tmp() / 'nope.pth'}", "--boundaries", lambda ws: f"b={ws.tmp()}"))
clear("recipe speed_perturb: factor 0", C, CommandFailed,
      r"exit 1: error: speed factors must be positive")(
    lambda ws: run_command("espnet_ofa.bin.recipe", "speed_perturb", "--src",
                           ws.data_dir({"wav.scp": "a {dir}/a.wav\n"}, ("a.wav",)),
                           "--dst", ws.tmp() / "sp", "--factors", "0"))


# ============================================================================ runner


def raised_by_us(err: BaseException) -> bool:
    """Whether ``err`` was raised by espnet_ofa's own code (or this sweep's command runner),
    not deep inside torch, numpy or another library."""
    if isinstance(err, CommandFailed):
        return True
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and Path(last).resolve().is_relative_to(PACKAGE_DIR)


def classify(case: Case, ws: Workspace) -> Tuple[str, str]:
    """(outcome, first line of the message) of one case."""
    try:
        # What a case prints (ESPnet's packer lists its files) is not its outcome.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            value = case.run(ws)
    except Skip as err:
        return "skipped", str(err)
    except BaseException as err:  # what a user would see: classify it
        if isinstance(err, KeyboardInterrupt):
            raise
        message = f"{type(err).__name__}: {str(err).strip()}"
        if case.error is not None and isinstance(err, case.error) and raised_by_us(err) \
                and re.search(case.match, str(err), re.DOTALL):
            return "clear", message
        if isinstance(err, CRASH_TYPES) and not (case.error and isinstance(err, case.error)):
            where = traceback.extract_tb(err.__traceback__)[-1]
            return "crash", f"{message} (at {Path(where.filename).name}:{where.lineno})"
        if isinstance(err, SystemExit):
            return "crash", f"SystemExit {err.code}"
        return "unclear", message
    if case.error is not None:
        return "silent", f"no error (returned {type(value).__name__})"
    try:
        ok = bool(case.check(value))
    except Exception as err:  # the check could not even read the value: wrong
        return "silent", f"wrong value ({type(err).__name__}: {err})"
    return ("correct", "") if ok else ("silent", f"wrong value: {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text[:100] + ("..." if len(text) > 100 else "")


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    with tempfile.TemporaryDirectory(prefix="reliability_sweep.") as root, \
            env(ESPNET_OFA_FRAME_PERIOD=None, ESPNET_OFA_LAM=None, ESPNET_OFA_ZOO=None):
        yield Workspace(Path(root))


def run_case(case: Case, ws: Workspace) -> Outcome:
    start = time.perf_counter()
    cwd = os.getcwd()
    try:
        outcome, message = classify(case, ws)
    finally:
        os.chdir(cwd)
    return Outcome(case, outcome, message, time.perf_counter() - start)


def case_id(case: Case) -> str:
    return f"{case.entry}: {case.name}"


def print_table(results: List[Outcome], out=sys.stdout) -> None:
    width = max(len(case_id(r.case)) for r in results)
    for r in results:
        line = r.message.splitlines()[0] if r.message else ""
        print(f"{case_id(r.case):<{width}}  {r.outcome:<8} {line[:110]}", file=out)


def summary(results: List[Outcome]) -> Dict[str, int]:
    return {name: sum(r.outcome == name for r in results) for name in OUTCOMES}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the cases whose 'entry: name' matches "
                        "this regex (case-insensitive)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    cases = [c for c in CASES if re.search(args.k, case_id(c), re.IGNORECASE)]
    start = time.perf_counter()
    with workspace() as ws:
        results = [run_case(case, ws) for case in cases]
    print_table(results)
    counts = summary(results)
    raising = counts["clear"] + counts["unclear"]
    share = f"{100.0 * counts['clear'] / raising:.0f}%" if raising else "n/a"
    print(f"\n{len(results)} cases in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{counts[k]} {k}" for k in OUTCOMES)
          + f"; clear among the raising cases: {share}")
    return 1 if counts["crash"] or counts["silent"] else 0


if __name__ == "__main__":
    sys.exit(main())
