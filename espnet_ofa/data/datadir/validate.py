"""Checking a data directory: :func:`validate_data_dir` raises :class:`DataDirError` at the
first problem, naming the file, the line and the fix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ofa.data.datadir.tables import (
    FIX_HINT,
    SEGMENT_OVERSHOOT_S,
    DataDirError,
    TableLine,
    is_utterance_table,
    read_table_lines,
    segment_problem,
    wav_scp_path,
)
from espnet_ofa.fileio import PathLike


@dataclass
class DataDirSummary:
    """What :func:`validate_data_dir` found in a valid directory."""

    path: Path
    num_utterances: int
    files: List[str]
    num_speakers: Optional[int] = None
    has_segments: bool = False

    def __str__(self) -> str:
        spk = f", {self.num_speakers} speakers" if self.num_speakers is not None else ""
        return f"{self.path}: {self.num_utterances} utterances{spk}; files: {', '.join(self.files)}"



def _check_sorted(path: Path, lines: Sequence[TableLine], data_dir: Path) -> None:
    for prev, cur in zip(lines, lines[1:]):
        if cur.key < prev.key:
            raise DataDirError(
                f"{path}:{cur.lineno}: ids are not sorted: '{cur.key}' comes after "
                f"'{prev.key}' (line {prev.lineno}). Kaldi needs C-locale order: run "
                f"`LC_ALL=C sort -o {path} {path}` or " + FIX_HINT.format(dir=data_dir)
            )


def _check_same_ids(
    path: Path, lines: Sequence[TableLine], ref_name: str, ref_ids: Sequence[str], data_dir: Path
) -> None:
    ref = set(ref_ids)
    for x in lines:
        if x.key not in ref:
            raise DataDirError(
                f"{path}:{x.lineno}: id '{x.key}' is not in {ref_name}. Every file must list "
                f"the same utterances; add it to {ref_name} or run " + FIX_HINT.format(dir=data_dir)
            )
    if len(lines) != len(ref):
        mine = {x.key for x in lines}
        missing = sorted(ref - mine)
        raise DataDirError(
            f"{path}: {len(missing)} id(s) of {ref_name} are missing here, e.g. "
            f"'{missing[0]}'. Add them or run " + FIX_HINT.format(dir=data_dir)
        )


def validate_data_dir(
    path: PathLike,
    required: Sequence[str] = ("wav.scp",),
    optional: Sequence[str] = ("text", "utt2spk", "spk2utt", "segments"),
    sample_rate: Optional[int] = None,
    check_audio_paths: bool = True,
) -> DataDirSummary:
    """Check a data directory; raise :class:`DataDirError` at the first problem.

    Checks, for every file of ``required`` (must exist) and ``optional`` (if present): not
    empty, no blank or malformed lines, unique ids, ids sorted in C-locale order; utterance
    ids of ``text``/``utt2spk``/... equal wav.scp's (or segments' when there is a
    ``segments`` file, whose recording ids must then be in wav.scp); ``spk2utt`` is the
    inverse of ``utt2spk``; no empty transcript in ``text``; every wav path exists
    (relative paths are taken from the current directory, like Kaldi/ESPnet recipes, which
    run from the recipe root). With ``sample_rate``, every plain audio file's header must
    say that rate (pipes and archives are not opened).

    Returns a :class:`DataDirSummary`.
    """
    data_dir = Path(path)
    tables = _read_sorted_tables(data_dir, required, optional)

    # Which table defines the utterance ids?
    has_segments = "segments" in tables
    if has_segments:
        _check_segment_lines(data_dir, tables["segments"], tables.get("wav.scp"))
        utt_ids, ref_name = [x.key for x in tables["segments"]], "segments"
    elif "wav.scp" in tables:
        utt_ids, ref_name = [x.key for x in tables["wav.scp"]], "wav.scp"
    else:
        utt_ids, ref_name = None, ""
    if utt_ids is not None:
        for name, lines in tables.items():
            # Only utterance-keyed tables must list exactly the utterances (spk2utt is keyed
            # by speaker; other files a caller names, e.g. reco2dur, are only checked line by
            # line).
            if is_utterance_table(name):
                _check_same_ids(data_dir / name, lines, ref_name, utt_ids, data_dir)

    num_speakers = _check_speakers(data_dir, tables) if "utt2spk" in tables else None

    if "wav.scp" in tables and (check_audio_paths or sample_rate is not None):
        _check_wavs(data_dir, tables["wav.scp"], check_audio_paths, sample_rate)
        if has_segments and check_audio_paths:
            _check_segment_ends(data_dir, tables["segments"], tables["wav.scp"])

    names = list(tables)
    if utt_ids is None:
        # No wav.scp asked for: count the utterances of the first utterance-keyed table.
        first = next((n for n in names if n not in ("spk2utt", "wav.scp")), names[0])
        utt_ids = [x.key for x in tables[first]]
    return DataDirSummary(
        path=data_dir,
        num_utterances=len(utt_ids),
        files=names,
        num_speakers=num_speakers,
        has_segments=has_segments,
    )


def _read_sorted_tables(data_dir: Path, required: Sequence[str],
                        optional: Sequence[str]) -> Dict[str, List[TableLine]]:
    """The ``required`` tables and the ``optional`` ones present, in that order, each read
    strictly (`read_table_lines`) and checked to be sorted."""
    if not data_dir.is_dir():
        raise DataDirError(
            f"{data_dir}: data directory not found. Create it with at least "
            f"{', '.join(required)} (e.g. by the recipe's data preparation stage)."
        )
    for name in required:
        if not (data_dir / name).is_file():
            raise DataDirError(
                f"{data_dir / name}: required file not found. Create it "
                "(one '<id> <value>' per line, sorted)."
            )
    names = list(dict.fromkeys([*required, *[n for n in optional if (data_dir / n).is_file()]]))
    tables: Dict[str, List[TableLine]] = {}
    for name in names:
        # spk2utt lines hold several utterances in their value; text may not be empty (the
        # strict reader reports empty transcripts itself).
        lines = read_table_lines(data_dir / name)
        _check_sorted(data_dir / name, lines, data_dir)
        tables[name] = lines
    return tables


def _check_segment_lines(data_dir: Path, segments: Sequence[TableLine],
                         recordings: Optional[Sequence[TableLine]]) -> None:
    """Each segment is well formed and, with a wav.scp, of a recording listed there."""
    seg_path = data_dir / "segments"
    recording_ids = None if recordings is None else {x.key for x in recordings}
    for x in segments:
        problem = segment_problem(x.value)
        if problem is not None:
            raise DataDirError(
                f"{seg_path}:{x.lineno}: malformed segment '{x.key} {x.value}' ({problem}). "
                "Expected '<utt-id> <recording-id> <start-seconds> <end-seconds>' with "
                "0 <= start < end (end -1 means to the end of the recording), or run "
                + FIX_HINT.format(dir=data_dir)
            )
        recording = x.value.split()[0]
        if recording_ids is not None and recording not in recording_ids:
            raise DataDirError(
                f"{seg_path}:{x.lineno}: recording '{recording}' of segment '{x.key}' is "
                "not in wav.scp. Add the recording to wav.scp or run "
                + FIX_HINT.format(dir=data_dir)
            )


def _check_speakers(data_dir: Path, tables: Dict[str, List[TableLine]]) -> int:
    """utt2spk gives one speaker id per utterance and spk2utt, if present, is its inverse;
    the number of speakers."""
    u2s = {x.key: x.value for x in tables["utt2spk"]}
    for x in tables["utt2spk"]:
        if len(x.value.split()) != 1:
            raise DataDirError(
                f"{data_dir / 'utt2spk'}:{x.lineno}: expected '<utt-id> <speaker-id>', got "
                f"'{x.key} {x.value}' (a speaker id has no spaces)."
            )
    if "spk2utt" in tables:
        s2u_path = data_dir / "spk2utt"
        seen = set()
        for x in tables["spk2utt"]:
            for utt in x.value.split():
                if u2s.get(utt) != x.key or utt in seen:
                    raise DataDirError(
                        f"{s2u_path}:{x.lineno}: utterance '{utt}' of speaker '{x.key}' "
                        "does not match utt2spk. Regenerate spk2utt from utt2spk with "
                        + FIX_HINT.format(dir=data_dir)
                    )
                seen.add(utt)
        if len(seen) != len(u2s):
            missing = sorted(set(u2s) - seen)[0]
            raise DataDirError(
                f"{s2u_path}: utterance '{missing}' of utt2spk is missing. Regenerate "
                "spk2utt from utt2spk with " + FIX_HINT.format(dir=data_dir)
            )
    return len(set(u2s.values()))


def _check_wavs(
    data_dir: Path, lines: Sequence[TableLine], check_paths: bool, sample_rate: Optional[int]
) -> None:
    wav_scp = data_dir / "wav.scp"
    for x in lines:
        file = wav_scp_path(x.value)
        if file is None:
            continue  # a pipe: only running it would tell.
        if check_paths and not os.path.isfile(file):
            raise DataDirError(
                f"{wav_scp}:{x.lineno}: audio file '{file}' of '{x.key}' does not exist "
                f"(relative paths are read from the current directory, {os.getcwd()}). "
                "Fix the path, run from the directory the paths are relative to, or drop the "
                "utterance."
            )
        if sample_rate is not None and file == x.value.strip():
            import soundfile  # lazy: reading tables needs no audio library

            try:
                rate = soundfile.info(file).samplerate
            except Exception as e:  # soundfile raises RuntimeError/LibsndfileError
                raise DataDirError(
                    f"{wav_scp}:{x.lineno}: cannot read audio '{file}' of '{x.key}': {e}. "
                    "Convert it to wav/flac or fix the path."
                ) from e
            if rate != sample_rate:
                raise DataDirError(
                    f"{wav_scp}:{x.lineno}: '{file}' is {rate} Hz but {sample_rate} Hz is "
                    f"expected. Resample it, e.g. `sox in.wav -r {sample_rate} out.wav`, or "
                    f"write a pipe in wav.scp: '{x.key} sox {file} -r {sample_rate} -t wav - |'."
                )


def _check_segment_ends(data_dir: Path, segments: Sequence[TableLine],
                        recordings: Sequence[TableLine]) -> None:
    """Every segment must start inside its recording and end at most
    `SEGMENT_OVERSHOOT_S` after it (plain audio files only: a pipe would have to run)."""
    import soundfile  # lazy: reading tables needs no audio library

    files = {x.key: x.value.strip() for x in recordings if wav_scp_path(x.value) == x.value.strip()}
    durations: Dict[str, float] = {}
    for x in segments:
        rec, start, end = x.value.split()
        file = files.get(rec)
        if file is None:
            continue
        if rec not in durations:
            try:
                durations[rec] = float(soundfile.info(file).duration)
            except Exception as e:  # soundfile raises RuntimeError/LibsndfileError
                raise DataDirError(
                    f"{data_dir / 'wav.scp'}: cannot read audio '{file}' of recording '{rec}' "
                    f"(used by {data_dir / 'segments'}:{x.lineno}): {e}. Convert it to "
                    "wav/flac or fix the path."
                ) from e
        duration, start_s, end_s = durations[rec], float(start), float(end)
        if start_s >= duration or (end_s != -1 and end_s > duration + SEGMENT_OVERSHOOT_S):
            raise DataDirError(
                f"{data_dir / 'segments'}:{x.lineno}: segment '{x.key}' ({start_s:g}-{end_s:g} s) "
                f"runs past the end of recording '{rec}' ({file}, {duration:.3f} s long). "
                "Fix its times (end -1 means to the end of the recording) or drop the segment."
            )

