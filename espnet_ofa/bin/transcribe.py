"""Transcribe audio files with a packed OFA ASR model at a chosen frame period.

    python -m espnet_ofa.bin.transcribe --model exp/asr.zip --frame-period 60 a.wav b.flac
    ESPNET_OFA_ZOO=/path/to/zoo python -m espnet_ofa.bin.transcribe --model fsdd_asr a.wav

``--model`` is a packed .zip, a name in a local zoo (``$ESPNET_OFA_ZOO``, offline), a name
in the package table, a URL or a Hugging Face id; the archive is verified before use.
Prints ``<file>\\t<hypothesis>`` per file and, at the end, the real-time factor (decoding
time / audio duration). Any sample rate soundfile reads is accepted and resampled to 16 kHz,
with a note on stderr; multi-channel audio is an error (mix it down first). Every input file
is checked before the model is loaded; a bad file, model or option exits with status 2 and
a message saying what to fix.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from espnet_ofa.bin import reports_errors
from espnet_ofa.constants import SAMPLE_RATE


def check_inputs(files: Sequence[str]) -> None:
    """``ValueError`` naming the first file that is missing or not readable audio."""
    from espnet_ofa.data.audio import audio_file_info

    for path in files:
        audio_file_info(path)


def transcribe(model: str, files: Sequence[str], frame_period: Optional[float] = None,
               task: str = "asr", beam_size: int = 4, device: str = "cpu") -> List[str]:
    """Decode ``files``; returns one hypothesis per file and prints progress to stderr.

    Raises:
        ValueError: a missing or non-audio file (before the model is loaded), a model that
            cannot be found or read (`espnet_ofa.zoo.ZooError`), an unusable period.
    """
    check_inputs(files)
    from espnet_ofa.data.audio import load_audio
    from espnet_ofa.inference import load_pretrained
    from espnet_ofa.system_speed import timed_decode

    speech2x = load_pretrained(model, task=task, frame_period=frame_period,
                               beam_size=beam_size, device=device)
    hypotheses, audio_seconds, decode_seconds = [], 0.0, 0.0
    for path in files:
        wav, rate = load_audio(path, SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            print(f"{path}: resampled from {rate} Hz to {SAMPLE_RATE} Hz", file=sys.stderr)
        results, timing = timed_decode(speech2x, task, wav, device)
        decode_seconds += timing.total
        audio_seconds += wav.shape[0] / SAMPLE_RATE
        text = results[0][0] if results else ""
        hypotheses.append(text)
        print(f"{path}\t{text}")
    rtf = decode_seconds / max(audio_seconds, 1e-9)
    print(f"real-time factor: {rtf:.3f} ({decode_seconds:.2f} s for {audio_seconds:.2f} s of audio)",
          file=sys.stderr)
    return hypotheses


@reports_errors(exit_status=2)  # bad audio, period or archive: the message says the fix
def main(argv: Optional[Sequence[str]] = None) -> None:
    from espnet_ofa.espnet_tasks import task_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True,
                        help="packed model: .zip path, zoo name, URL or Hugging Face id")
    parser.add_argument("--frame-period", type=float, default=None,
                        help="frame period in ms (default: the model's own)")
    parser.add_argument("--task", default="asr", choices=task_names())
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("files", nargs="+", help="audio files")
    args = parser.parse_args(argv)
    transcribe(args.model, args.files, args.frame_period, args.task, args.beam_size,
               args.device)


if __name__ == "__main__":
    main()
