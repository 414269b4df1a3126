"""Benchmark: one epoch of downstream ASR training on a frozen OFA model, live vs cached.

    python -m espnet_ofa.bin.benchmark_cache --config egs2/fsdd/asr1/conf/train_asr_ofa.yaml \
        --data_dir egs2/fsdd/asr1/dump/raw/train_sp [--ofa_model CKPT | --preset distilhubert] \
        [--frame_period 40] [--num_utts 96] [--batch_size 16] [--json FILE]

Builds the config's ESPnet ASR model twice with the same weights, once with ``frontend:
ofa`` (the SSL model runs in every step) and once with ``frontend: ofa_cached`` on the
features `espnet_ofa.recipe.feature_cache` extracted, and times the same training steps
(forward, backward, optimiser step; SpecAugment and normalisation on) on the same padded
batches, the two interleaved batch by batch so that a busy machine slows both alike.
Prints the seconds per epoch of each, their ratio, the one-off extraction time and the
cache's size. Without ``--ofa_model`` the OFA model is a random-weight ``--preset`` (the
timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import yaml
from espnet_ofa.constants import SAMPLE_RATE


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a downstream ASR config (frontend: ofa)")
    parser.add_argument("--data_dir", required=True, help="a data dir (wav.scp, text)")
    parser.add_argument("--ofa_model", default=None, help="an OFA checkpoint (.pth)")
    parser.add_argument("--preset", default="tiny", help="random student without --ofa_model")
    parser.add_argument("--frame_period", type=float, default=None,
                        help="default: the config's")
    parser.add_argument("--num_utts", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    import kaldiio

    from espnet_ofa.bin.benchmark_model import write_json
    from espnet_ofa.recipe import feature_cache

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="benchmark_cache_") as tmp:
        work = Path(tmp)
        data = _Subset.write(Path(args.data_dir), args.num_utts, work)
        conf_path = _training_config(args, work)
        spec, why = feature_cache.cache_spec(conf_path)
        if spec is None:
            raise SystemExit(f"error: {args.config}: nothing to cache: {why}")
        start = time.perf_counter()
        scp = feature_cache.extract(spec, data.dir, work / "cache", progress=False)
        extract_seconds = time.perf_counter() - start
        live, cached = _same_model_twice(conf_path, data.token_list)
        epoch_seconds = _timed_epoch(live, cached, data, kaldiio.load_scp(str(scp)),
                                     args.batch_size)
        report = {
            "config": args.config, "ofa_model": args.ofa_model or f"random {args.preset}",
            "frame_period": spec.frame_period, "num_utts": len(data.utts),
            "batch_size": args.batch_size,
            "audio_seconds": sum(a.numel() for a in data.audio.values()) / SAMPLE_RATE,
            "threads": torch.get_num_threads(),
            "epoch_seconds": epoch_seconds,
            "speedup": epoch_seconds["live"] / epoch_seconds["cached"],
            "extract_seconds": extract_seconds,
            "cache_bytes": feature_cache.cache_bytes(work / "cache"),
        }
    print(f"{report['ofa_model']} at {spec.frame_period:g} ms, {len(data.utts)} utterances "
          f"({report['audio_seconds']:.0f} s of audio), batches of {args.batch_size}:")
    print(f"  one epoch: live {epoch_seconds['live']:.2f} s, cached "
          f"{epoch_seconds['cached']:.2f} s: {report['speedup']:.2f}x faster cached")
    print(f"  extraction, once: {extract_seconds:.2f} s; cache "
          f"{report['cache_bytes'] / 2**20:.1f} MiB "
          f"({report['cache_bytes'] / report['audio_seconds'] / 1024:.1f} KiB per second of audio)")
    if args.json is not None:
        write_json(args.json, report)
    return report


@dataclass
class _Subset:
    """The first utterances of a data dir: their audio, transcripts and word tokens."""

    dir: Path  # holds their wav.scp
    utts: List[str]
    audio: Dict[str, torch.Tensor]
    texts: Dict[str, str]
    tokens: List[str]
    token_list: Path

    @classmethod
    def write(cls, data_dir: Path, num_utts: int, work: Path) -> "_Subset":
        import soundfile as sf

        from espnet_ofa.data.datadir import read_kaldi_table

        wavs, texts = read_kaldi_table(data_dir / "wav.scp"), read_kaldi_table(data_dir / "text")
        utts = sorted(wavs)[:num_utts]
        sub = work / "data"
        sub.mkdir()
        (sub / "wav.scp").write_text("".join(f"{u} {wavs[u]}\n" for u in utts))
        words = sorted({w for u in utts for w in texts[u].split()})
        tokens = ["<blank>", "<unk>", *words, "<sos/eos>"]
        (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
        audio = {u: torch.from_numpy(sf.read(wavs[u], dtype="float32")[0]) for u in utts}
        return cls(sub, utts, audio, texts, tokens, work / "tokens.txt")


def _training_config(args: argparse.Namespace, work: Path) -> Path:
    """The config with the OFA model (``--ofa_model`` or a random ``--preset``) and the
    period asked for."""
    from espnet_ofa.models.pretrained import save_student
    from espnet_ofa.models.student import build_student

    model = args.ofa_model
    if model is None:
        model = str(save_student(build_student(args.preset), work / "ofa", preset=args.preset))
    conf = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    conf["frontend_conf"]["model"] = model
    if args.frame_period is not None:
        conf["frontend_conf"]["frame_period"] = args.frame_period
    conf_path = work / "train.yaml"
    conf_path.write_text(yaml.safe_dump(conf))
    return conf_path


def _same_model_twice(conf_path: Path, token_list: Path):
    """The config's ASR model with ``frontend: ofa`` and with ``ofa_cached``, same weights."""
    from espnet2.tasks.asr import ASRTask

    def build(frontend: str):
        parsed = ASRTask.get_parser().parse_args(
            ["--config", str(conf_path), "--token_list", str(token_list),
             "--token_type", "word", "--frontend", frontend])
        return ASRTask.build_model(parsed)

    live, cached = build("ofa"), build("ofa_cached")
    missing = cached.load_state_dict(live.state_dict(), strict=False).missing_keys
    if missing:  # every weight of the cached model must come from the live one
        raise RuntimeError(f"ofa_cached has weights that frontend: ofa lacks: {missing}")
    return live, cached


def _timed_epoch(live, cached, data: _Subset, cached_feats, batch_size: int) -> Dict[str, float]:
    """Seconds of one training epoch of each model (forward, backward, optimiser step) on
    the same batches, interleaved batch by batch; the first step of each warms up and is
    counted as an average one."""
    import numpy as np

    optims = {name: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
              for name, m in (("live", live), ("cached", cached))}
    index = {w: i for i, w in enumerate(data.tokens)}
    # Longest first, as ESPnet's samplers give them (its RNN encoders need that order).
    order = sorted(data.utts, key=lambda u: (cached_feats[u].shape[0], data.audio[u].numel()),
                   reverse=True)
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]

    def text_batch(batch: List[str]):
        ids = [torch.tensor([index[w] for w in data.texts[u].split()]) for u in batch]
        return (torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
                torch.tensor([len(i) for i in ids]))

    def inputs(name: str, batch: List[str]):
        rows = ([data.audio[u] for u in batch] if name == "live"
                else [torch.from_numpy(np.array(cached_feats[u])) for u in batch])
        return (torch.nn.utils.rnn.pad_sequence(rows, batch_first=True),
                torch.tensor([r.shape[0] for r in rows]))

    seconds = {"live": 0.0, "cached": 0.0}
    for m in (live, cached):
        m.train()
    for step, batch in enumerate(batches):
        text, text_lengths = text_batch(batch)
        for name, m in (("live", live), ("cached", cached)):
            speech, lengths = inputs(name, batch)  # reading from disk/memory: not timed
            begin = time.perf_counter()
            loss, _, _ = m(speech, lengths, text, text_lengths)
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            if step > 0:  # the first step of each warms up
                seconds[name] += time.perf_counter() - begin
    scale = len(batches) / max(len(batches) - 1, 1)  # per epoch, the warm-up step included
    return {k: v * scale for k, v in seconds.items()}


if __name__ == "__main__":
    main()
