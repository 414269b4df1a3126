"""Benchmark: a whole packed ASR/SLU/ST system per frame period (RTF, breakdown, memory).

    python -m espnet_ofa.bin.benchmark_system --model exp/asr_x/packed/model.zip \
        --periods 20 40 60 80 90 --data_dir dump/raw/test [--num_utts 20] \
        [--batch_sizes 1 8] [--repeats 1] [--beam_size 4 | --ctc_greedy] [--device cpu] \
        [--json FILE]

Loads the model once with ESPnet's inference class for its task (``Speech2Text``,
``Speech2Understand``; the archive says which) and decodes the same utterances at each
period, one at a time and in padded batches, timing each decoding with
`espnet_ofa.system_speed` (the code stage 12's RTF comes from). Prints per period and
batch size the real-time factor (decoding seconds / audio seconds), its split into
frontend, encoder and decoding (the rest: search, CTC scoring, normalisation), the
speed-up against the first period, and the peak memory.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from espnet_ofa.bin import reports_errors
from espnet_ofa.constants import SAMPLE_RATE


def get_parser() -> argparse.ArgumentParser:
    from espnet_ofa.espnet_tasks import task_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True,
                        help="packed model: .zip path, zoo name, URL or Hugging Face id")
    parser.add_argument("--task", default=None, choices=task_names(),
                        help="default: the task the archive was packed for")
    parser.add_argument("--periods", type=float, nargs="*", default=None,
                        help="frame periods in ms (default: the model's own rate only)")
    audio = parser.add_mutually_exclusive_group(required=True)
    audio.add_argument("--data_dir", help="a data dir whose wav.scp gives the audio")
    audio.add_argument("--wavs", nargs="+", help="audio files")
    parser.add_argument("--num_utts", type=int, default=20,
                        help="first N utterances of --data_dir (0: all)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=1, help="passes over the utterances")
    parser.add_argument("--beam_size", type=int, default=4)
    parser.add_argument("--ctc_weight", type=float, default=None,
                        help="default: the inference class' own")
    parser.add_argument("--ctc_greedy", action="store_true",
                        help="a CTC-only model decoded by the best path instead of the beam "
                             "search (as the recipes' conf/decode_asr.yaml 'ctc_greedy: true')")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    return parser


def load_speech(data_dir: Optional[str], wavs: Optional[Sequence[str]],
                num_utts: int) -> List[torch.Tensor]:
    """16 kHz mono waveforms from a data dir's wav.scp or a list of files."""
    from espnet_ofa.data.audio import load_audio
    from espnet_ofa.data.datadir import read_kaldi_table

    if data_dir is not None:
        table = read_kaldi_table(Path(data_dir) / "wav.scp")
        sources = [table[u] for u in sorted(table)]
        sources = sources[:num_utts] if num_utts > 0 else sources
    else:
        sources = list(wavs)
    return [load_audio(src, SAMPLE_RATE)[0] for src in sources]


def format_rows(rows: List[dict]) -> str:
    first = {}
    lines = ["period  batch    RTF   frontend  encoder  decoding  speed-up  peak MiB"]
    for r in rows:
        b = r["batch_size"]
        first.setdefault(b, r["rtf"])
        p = "own" if r["frame_period"] is None else f"{r['frame_period']:g}"
        parts = r["rtf_parts"]
        lines.append(f"{p:>6}  {b:>5}  {r['rtf']:.4f}  {parts['frontend']:.4f}    "
                     f"{parts['encoder']:.4f}   {parts['decoding']:.4f}    "
                     f"{first[b] / r['rtf']:5.2f}x  {r['peak_rss_mib']:8.0f}")
    return "\n".join(lines)


@reports_errors(exit_status=2)  # bad model, audio or period: the message says the fix
def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = get_parser()
    args = parser.parse_args(argv)
    from espnet_ofa.bin.benchmark_model import write_json
    from espnet_ofa.espnet_tasks import task_of_archive
    from espnet_ofa.inference import load_pretrained
    from espnet_ofa.system_speed import benchmark_system
    from espnet_ofa.zoo.hub import download_and_unpack

    task = args.task
    if task is None:
        found = task_of_archive(download_and_unpack(args.model))
        if found is None:
            raise ValueError(f"{args.model} is not a packed asr/slu/st model; give --task")
        task = found.name
    speech = load_speech(args.data_dir, args.wavs, args.num_utts)
    kwargs = {"beam_size": args.beam_size, "device": args.device}
    if args.ctc_weight is not None:
        kwargs["ctc_weight"] = args.ctc_weight
    speech2x = load_pretrained(args.model, task=task, ctc_greedy=args.ctc_greedy, **kwargs)
    rows = benchmark_system(speech2x, task, speech, args.periods or [None],
                            args.batch_sizes, args.device, args.repeats)
    report = {
        "model": str(args.model), "task": task, "device": args.device,
        "conditions": {"torch_threads": torch.get_num_threads(),
                       "search": "ctc_greedy" if args.ctc_greedy else f"beam {args.beam_size}",
                       "machine": platform.processor() or platform.machine(),
                       "torch": torch.__version__},
        "rows": rows,
    }
    print(format_rows(rows))
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
