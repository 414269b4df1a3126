"""Scoring (stage 13): WER/CER for ASR (jiwer), intent accuracy for SLU, BLEU for ST.

ASR transcripts of phones (phone recognition, SUPERB's PR task) are scored as PER: the same
edit distance over space-separated phones (``metric="PER"``; no CER, which means nothing
for phones).

References and hypotheses are Kaldi text files (``utt text``). Every reference utterance
is scored; one missing from the hypotheses counts as an empty hypothesis (and is reported
in ``missing``), so a crashed decoding job cannot make a result look better.

ASR and SLU results also keep per-utterance error counts (``per_utt``: utt -> [errors,
reference length]; for SLU [wrong intent, 1]), from which the results compare two models
with a paired bootstrap over utterances (:mod:`espnet_ofa.recipe.bootstrap`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table
from espnet_ofa.espnet_tasks import get_task
from espnet_ofa.fileio import PathLike

logger = logging.getLogger(__name__)

# By the kind of output of a task (`espnet_ofa.espnet_tasks.EspnetTask.kind`).
METRICS = {"asr": ("WER", "lower"), "slu": ("accuracy", "higher"), "st": ("BLEU", "higher")}
# Other metrics a task can report instead of its default: the ASR error rate over phones.
ALTERNATIVE_METRICS = {"asr": ("PER",)}
# Scores reported beside a task's metric (BLEU's companion), with their direction.
COMPANION_METRICS = {"chrF": "higher"}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (accuracy, BLEU, chrF; not an error
    rate such as WER, CER or PER)."""
    directions = {name: way for name, way in METRICS.values()} | COMPANION_METRICS
    return directions.get(metric, "lower") == "higher"


def _pairs(ref: Dict[str, str], hyp: Dict[str, str]) -> Tuple[List[str], List[str], List[str]]:
    missing = sorted(set(ref) - set(hyp))
    utts = sorted(ref)
    return [ref[u] for u in utts], [hyp.get(u, "") for u in utts], missing


def _normalize(text: str) -> str:
    return " ".join(text.split())


def score_asr(refs: List[str], hyps: List[str]) -> dict:
    """WER and CER in %, with the error counts (jiwer); sentence error rate too."""
    import jiwer

    refs = [_normalize(r) for r in refs]
    hyps = [_normalize(h) for h in hyps]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    n_words = sum(len(r.split()) for r in refs)
    errors = [sum((c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert"
                  else (c.ref_end_idx - c.ref_start_idx)
                  for c in chunks if c.type != "equal")
              for chunks in words.alignments]
    return {
        "utt_errors": [[e, len(r.split())] for e, r in zip(errors, refs)],
        "WER": 100.0 * words.wer,
        "CER": 100.0 * chars.cer,
        "SER": 100.0 * sum(r != h for r, h in zip(refs, hyps)) / len(refs),
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "num_words": n_words,
    }


def score_slu(refs: List[str], hyps: List[str]) -> dict:
    """Intent accuracy (first token of ``intent words...``) in %, and the words' WER."""
    def split(text: str) -> Tuple[str, str]:
        parts = text.split(None, 1)
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")

    ref_i, ref_w = zip(*(split(r) for r in refs))
    hyp_i, hyp_w = zip(*(split(h) for h in hyps))
    acc = 100.0 * sum(a == b for a, b in zip(ref_i, hyp_i)) / len(refs)
    out = {"accuracy": acc, "utt_errors": [[int(a != b), 1] for a, b in zip(ref_i, hyp_i)]}
    if any(ref_w):
        import jiwer

        out["WER"] = 100.0 * jiwer.wer([w or "<none>" for w in ref_w],
                                       [w or "" for w in hyp_w])
    return out


def score_st(refs: List[str], hyps: List[str]) -> dict:
    """Corpus BLEU and chrF (sacrebleu, default 13a tokenisation)."""
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {"BLEU": bleu.score, "chrF": chrf.score, "bleu_signature": str(bleu)}


SCORERS = {"asr": score_asr, "slu": score_slu, "st": score_st}


def score_phones(refs: List[str], hyps: List[str]) -> dict:
    """PER in % (and SER): the word error rate of :func:`score_asr` over phone tokens."""
    out = score_asr(refs, hyps)
    out["PER"] = out.pop("WER")
    out["num_phones"] = out.pop("num_words")
    del out["CER"]
    return out


def score(task: str, ref: Dict[str, str], hyp: Dict[str, str],
          metric: Optional[str] = None) -> dict:
    """Score ``hyp`` against ``ref`` (``{utt: text}``) as `espnet_ofa.espnet_tasks` says the
    task's output is scored, or with ``metric`` (one of that kind's
    ``ALTERNATIVE_METRICS``, e.g. PER for phone transcripts); ValueError for an unknown
    task, metric or foreign utterances."""
    kind = get_task(task).kind
    allowed = (METRICS[kind][0], *ALTERNATIVE_METRICS.get(kind, ()))
    if metric is not None and metric not in allowed:
        raise ValueError(f"task {task} is scored with {' or '.join(allowed)}, not {metric!r}")
    unknown = sorted(set(hyp) - set(ref))
    if unknown:
        raise ValueError(f"hypotheses for utterances not in the reference, e.g. {unknown[0]!r}: "
                         "decoded the wrong test set?")
    refs, hyps, missing = _pairs(ref, hyp)
    result = (score_phones if metric == "PER" else SCORERS[kind])(refs, hyps)
    utt_errors = result.pop("utt_errors", None)
    if utt_errors is not None:
        result["per_utt"] = dict(zip(sorted(ref), utt_errors))
    default, better = METRICS[kind]
    metric = metric or default
    result.update({"metric": metric, "value": result[metric], "better": better,
                   "num_utts": len(refs), "missing": missing})
    result["summary"] = (f"{metric} {result[metric]:.2f}" + ("%" if metric != "BLEU" else "")
                         + f" on {len(refs)} utterances"
                         + (f" ({len(missing)} without hypothesis)" if missing else ""))
    return result


def score_files(task: str, ref: PathLike, hyp: PathLike, out: PathLike,
                info: Optional[PathLike] = None, metric: Optional[str] = None) -> dict:
    """Score Kaldi text files; write ``out`` (JSON, merged with the decoding ``info``)."""
    refs = read_kaldi_table(ref)
    hyp_path = Path(hyp)
    if not hyp_path.is_file():
        raise FileNotFoundError(f"{hyp}: no hypotheses; run the decoding stage (12) first")
    hyps = read_kaldi_table(hyp, allow_empty_values=True) if hyp_path.stat().st_size else {}
    result = score(task, refs, hyps, metric)
    result.update({"ref": str(ref), "hyp": str(hyp)})
    if info is not None and Path(info).is_file():
        result = {**json.loads(Path(info).read_text(encoding="utf-8")), **result}
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if result["missing"]:
        logger.warning("%s: %d utterances without a hypothesis, e.g. %s", hyp,
                       len(result["missing"]), result["missing"][0])
    return result


def score_decode_dir(task: str, decode_dir: PathLike, data_root: PathLike,
                     metric: Optional[str] = None) -> List[dict]:
    """Score every ``<decode_dir>/<rate>/<set>/text`` against ``<data_root>/<set>/text``.

    Writes ``result.json`` beside each hypothesis file (merged with its ``info.json``).
    """
    decode_dir, data_root = Path(decode_dir), Path(data_root)
    hyps = sorted(decode_dir.glob("*/*/text"))
    if not hyps:
        raise FileNotFoundError(f"{decode_dir}: no decodings (<rate>/<set>/text); run stage 12")
    results = []
    for hyp in hyps:
        ref = data_root / hyp.parent.name / "text"
        results.append(score_files(task, ref, hyp, hyp.parent / "result.json",
                                   info=hyp.parent / "info.json", metric=metric))
    return results
