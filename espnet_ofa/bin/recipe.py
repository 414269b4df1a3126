"""Recipe steps that need no ESPnet import (fast to start), one subcommand each.

    python -m espnet_ofa.bin.recipe fsdd_data --task asr --fsdd DIR --data_dir data [...]
    python -m espnet_ofa.bin.recipe librispeech_data --librispeech DIR --set train=train-clean-100 --set dev=dev-clean
    python -m espnet_ofa.bin.recipe slurp_data --slurp DIR --data_dir data
    python -m espnet_ofa.bin.recipe covost2_data --commonvoice DIR --covost2 DIR --data_dir data
    python -m espnet_ofa.bin.recipe speechocean762_data --speechocean762 DIR --data_dir data
    python -m espnet_ofa.bin.recipe speed_perturb --src data/train --dst data/train_sp --factors 0.9 1.0 1.1
    python -m espnet_ofa.bin.recipe format --src data/test --dst dump/raw/test --fs 16k
    python -m espnet_ofa.bin.recipe filter --src dump/raw/org/train --dst dump/raw/train --min 0.1 --max 20
    python -m espnet_ofa.bin.recipe token_list --text dump/raw/train/text --out tokens.txt --token_type word
    python -m espnet_ofa.bin.recipe kmeans_labels --data_dir dump/raw/train --out exp/km/train/text.km
    python -m espnet_ofa.bin.recipe score_all --task asr --decode_dir exp/asr_x/decode_asr --data_root dump/raw
    python -m espnet_ofa.bin.recipe score --task asr --ref data/test/text --hyp exp/.../text --out result.json
    python -m espnet_ofa.bin.recipe results --exp_dirs exp/asr_a exp/asr_b --out RESULTS.md --plot
    python -m espnet_ofa.bin.recipe compare --a exp/word/asr_p40 --b exp/word_mel/asr_p40 --labels cnn mel
    python -m espnet_ofa.bin.recipe plan --task asr --configs conf/a.yaml --ofa_model M --seeds 3
    python -m espnet_ofa.bin.recipe ssl_plan --ssl_exp exp/ssl_train_ofa_tiny --fixed_rate_periods 40
    python -m espnet_ofa.bin.recipe trained_range --exp_dir exp/ssl_train_ofa_tiny --data_dir dump/raw/dev
    python -m espnet_ofa.bin.recipe resume_check --exp_dir exp/asr_x

Each prints ``error: <message>`` and exits 1 on bad input (a message that names the file,
and the line where there is one), so that shell stages stop with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from espnet_ofa.bin import configure_logging, paired, reports_errors


def _int_or_none(value: str) -> Optional[int]:
    return None if value.lower() in ("", "none", "all", "0") else int(value)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_ofa.bin.recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log_level", default="WARNING")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_data_commands(sub)
    _add_data_stage_commands(sub)
    _add_scoring_commands(sub)
    _add_plan_commands(sub)
    for name, parser in sub.choices.items():
        parser.set_defaults(run=COMMANDS[name])
    return p


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Stage 1: each corpus's data directories, as released."""
    # The FSDD data sets are the tasks' kinds and "ssl".
    from espnet_ofa.recipe.prepare import TASKS as DATA_TASKS

    s = sub.add_parser("fsdd_data", help="stage 1: FSDD data directories for a task")
    s.add_argument("--task", required=True, choices=DATA_TASKS)
    s.add_argument("--fsdd", required=True, help="FSDD root (holding recordings/)")
    s.add_argument("--data_dir", default="data")
    s.add_argument("--heldout_speaker", default="theo", help="'' for no second test set")
    s.add_argument("--speakers", default="", help="comma-separated train speakers (default all)")
    for name in ("train", "dev", "test", "heldout"):
        s.add_argument(f"--{name}_takes", type=_int_or_none, default=None,
                       help=f"first N takes per speaker and digit in {name} (default all)")
    s.add_argument("--min_digits", type=int, default=2)
    s.add_argument("--max_digits", type=int, default=7)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train_single_takes", choices=("true", "false"), default="false",
                   help="asr/st: the train set also holds every train take on its own")
    s.add_argument("--no_download", action="store_true", help="fail instead of downloading")
    s.add_argument("--url", default=None, help="FSDD archive URL (default: the GitHub release)")

    s = sub.add_parser("librispeech_data", help="stage 1: LibriSpeech data dirs (as released)")
    s.add_argument("--librispeech", required=True, help="the folder holding LibriSpeech/")
    s.add_argument("--data_dir", default="data")
    s.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=PARTS",
                   help="a data dir and its parts, e.g. train=train-clean-100,train-clean-360 "
                        "(repeat for each set)")
    s.add_argument("--max_utts", type=_int_or_none, default=None,
                   help="first N utterances of each set (default all)")
    s.add_argument("--no_download", action="store_true", help="fail instead of downloading")

    s = sub.add_parser("slurp_data", help="stage 1: SLURP data dirs (as released)")
    s.add_argument("--slurp", required=True, help="the SLURP release (dataset/slurp/, audio/)")
    s.add_argument("--data_dir", default="data")
    s.add_argument("--use_synthetic", default="true", choices=("true", "false"),
                   help="add train_synthetic.jsonl (slurp_synth audio) to train when present")
    s.add_argument("--train_recordings", default="all", choices=("all", "headset", "farfield"))
    s.add_argument("--eval_recordings", default="all", choices=("all", "headset", "farfield"))
    s.add_argument("--max_utts", type=_int_or_none, default=None)

    s = sub.add_parser("covost2_data", help="stage 1: CoVoST 2 en-de data dirs (as released)")
    s.add_argument("--commonvoice", required=True, help="Common Voice release (holding en/)")
    s.add_argument("--covost2", required=True, help="folder of covost_v2.en_de.tsv")
    s.add_argument("--data_dir", default="data")
    s.add_argument("--max_utts", type=_int_or_none, default=None)
    s.add_argument("--no_download", action="store_true",
                   help="fail instead of downloading the CoVoST table")

    s = sub.add_parser("speechocean762_data",
                       help="stage 1: speechocean762 data dirs (as released): words, phones, SSL audio")
    s.add_argument("--speechocean762", required=True,
                   help="the release (holding WAVE/, train/, test/, resource/)")
    s.add_argument("--data_dir", default="data")
    s.add_argument("--dev_speakers", type=int, default=None,
                   help="train speakers held out as the dev set (default 12)")
    s.add_argument("--max_utts", type=_int_or_none, default=None,
                   help="first N utterances of train, dev and test (default all)")
    s.add_argument("--no_download", action="store_true", help="fail instead of downloading")
    s.add_argument("--url", default=None, help="release archive URL (default: OpenSLR 101)")


def _add_data_stage_commands(sub: argparse._SubParsersAction) -> None:
    """Stages 2-5 and the teacher's units: data dirs in, data dirs or tables out."""
    s = sub.add_parser("speed_perturb", help="stage 2: speed-perturbed copy of a data dir")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--factors", type=float, nargs="+", required=True)

    s = sub.add_parser("format", help="stage 3: check, resample and dump data dirs")
    s.add_argument("--src", required=True, nargs="+", help="data dirs")
    s.add_argument("--dst", required=True, nargs="+",
                   help="where each one's dump goes (one per --src, in order)")
    s.add_argument("--fs", default="16k")
    s.add_argument("--required", nargs="+", default=["wav.scp"],
                   help="tables that must exist (e.g. wav.scp text)")

    s = sub.add_parser("filter", help="stage 4: drop too short/long utterances")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--fs", default="16k")
    s.add_argument("--min", type=float, default=0.1, help="seconds")
    s.add_argument("--max", type=float, default=20.0, help="seconds")
    s.add_argument("--text_files", nargs="*", default=["text"])

    s = sub.add_parser("token_list", help="stage 5: token list (word, char or bpe)")
    s.add_argument("--text", nargs="+", required=True, help="Kaldi text file(s)")
    s.add_argument("--out", required=True)
    s.add_argument("--token_type", default="word", choices=("word", "char", "bpe"))
    s.add_argument("--nbpe", type=int, default=30)
    s.add_argument("--nbpe_fit_data", default="false", choices=("true", "false"),
                   help="raise --nbpe to what the text's characters need (smoke runs)")
    s.add_argument("--nbpe_option", default="--nbpe",
                   help="the recipe option an error about --nbpe names")
    s.add_argument("--bpemode", default="unigram")
    s.add_argument("--no_blank", action="store_true", help="no <blank> (no CTC)")

    s = sub.add_parser("kmeans_labels", help="MFCC k-means frame labels for hubert_train")
    s.add_argument("--data_dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--n_clusters", type=int, default=50)
    s.add_argument("--kmeans", default=None, help="centroids to use instead of fitting")
    s.add_argument("--token_list", default=None, help="also write the units' token list")
    s.add_argument("--max_utts", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)


def _add_scoring_commands(sub: argparse._SubParsersAction) -> None:
    """Stage 13: scores and RESULTS.md."""
    from espnet_ofa.espnet_tasks import task_names

    s = sub.add_parser("score", help="stage 13: score one decoding")
    s.add_argument("--task", required=True, choices=task_names())
    s.add_argument("--ref", required=True, help="reference Kaldi text")
    s.add_argument("--hyp", required=True, help="hypothesis Kaldi text")
    s.add_argument("--out", required=True, help="result.json to write")
    s.add_argument("--info", default=None, help="decoding info.json to merge (period, MACs, RTF)")
    s.add_argument("--metric", default=None, help="instead of the task's default metric, e.g. "
                   "PER for phone transcripts (asr)")

    s = sub.add_parser("score_all", help="stage 13: score every decoding under a directory")
    s.add_argument("--task", required=True, choices=task_names())
    s.add_argument("--decode_dir", required=True, help="<exp>/<decode tag> (holding <rate>/<set>/text)")
    s.add_argument("--data_root", required=True, help="dump/raw: <set>/text are the references")
    s.add_argument("--metric", default=None, help="instead of the task's default metric, e.g. "
                   "PER for phone transcripts (asr)")

    s = sub.add_parser("results", help="RESULTS.md and a plot from scored decodings")
    s.add_argument("--exp_dirs", nargs="+", required=True)
    s.add_argument("--out", default="RESULTS.md")
    s.add_argument("--plot", default=None, help="PNG to write (metric vs period and MACs)")
    s.add_argument("--title", default=None)
    s.add_argument("--notes", default=None, help="a Markdown file whose text goes on top")
    s.add_argument("--smoke", default="false", choices=("true", "false"),
                   help="true: a --smoke true recipe run, labelled as not a result")

    s = sub.add_parser("compare", help="two sets of experiments on the same test sets and "
                       "rates (e.g. two fronts): b - a per rate with a bootstrap interval")
    s.add_argument("--a", nargs="+", required=True, metavar="EXP_DIR",
                   help="the reference side: one experiment (and its seeds) per rate")
    s.add_argument("--b", nargs="+", required=True, metavar="EXP_DIR")
    s.add_argument("--labels", nargs=2, default=("a", "b"), metavar=("A", "B"))
    s.add_argument("--out", default=None, help="Markdown file to write (default: stdout)")


def _add_plan_commands(sub: argparse._SubParsersAction) -> None:
    """The experiments and students to train, and what training needs before and after."""
    from espnet_ofa.espnet_tasks import task_names

    s = sub.add_parser("plan", help="stages 10-15: the experiments (one tab-separated line "
                       "each: exp dir, config, stats key, SSL model, extra options)")
    s.add_argument("--task", required=True, choices=task_names())
    s.add_argument("--configs", nargs="+", required=True)
    s.add_argument("--expdir", default="exp")
    s.add_argument("--train_frame_periods", type=float, nargs="*", default=[])
    s.add_argument("--fixed_rate_periods", type=float, nargs="*", default=[])
    s.add_argument("--ofa_model", default=None)
    s.add_argument("--seeds", type=int, default=1)
    s.add_argument("--single_rate_periods", type=float, nargs="*", default=[])
    s.add_argument("--ssl_seeds", type=int, default=1)
    s.add_argument("--pooled_periods", type=float, nargs="*", default=[],
                   help="ms: also train each fixed-rate OFA config on the OFA model at 20 ms "
                        "with its features average-pooled to each period")
    s.add_argument("--jitter_control", choices=("true", "false"), default="false",
                   help="also train each learnt-rate model's jitter control")
    s.add_argument("--teacher_pooled_periods", type=float, nargs="*", default=[],
                   help="ms: also train each fixed-rate OFA config on the OFA model's teacher "
                        "at 20 ms with its features average-pooled to each period")
    s.add_argument("--teacher", default=None,
                   help="that teacher (a load_teacher source); default: the one the OFA "
                        "model's config.yaml names")
    s.add_argument("--teacher_pending", choices=("true", "false"), default="false",
                   help="true: an OFA model not trained yet leaves the teacher's experiments "
                        "out (the recipe plans again after its SSL recipe ran)")

    s = sub.add_parser("ssl_plan", help="ssl.sh stage 10: the students to pretrain (one "
                       "tab-separated line each: exp dir, extra options)")
    s.add_argument("--ssl_exp", required=True, help="the OFA experiment dir (seed 0)")
    s.add_argument("--fixed_rate_periods", type=float, nargs="*", default=[])
    s.add_argument("--single_rate_periods", type=float, nargs="*", default=[])
    s.add_argument("--ssl_seeds", type=int, default=1)

    s = sub.add_parser("trained_range", help="ssl.sh stage 10: in the lam modes, measure a "
                       "student's mean alpha and record the periods it serves in config.yaml")
    s.add_argument("--exp_dir", required=True, help="the student's experiment dir")
    s.add_argument("--data_dir", required=True, help="16 kHz data to measure on (dump/raw/dev)")
    s.add_argument("--model_file", default="valid.loss.best.pth")
    s.add_argument("--max_utts", type=int, default=None)

    s = sub.add_parser("resume_check", help="before --resume true: set a damaged checkpoint aside")
    s.add_argument("--exp_dir", required=True, help="the training's output dir")


@reports_errors(RuntimeError)
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    configure_logging(args.log_level)
    if args.cmd in ONE_THREAD:
        # Many small utterances: torch's intra-op threads only add overhead (50x on resampling).
        # Set for torch to read when the command imports it (only to resample or compute
        # MFCCs): importing torch here would make every run pay for it.
        os.environ["OMP_NUM_THREADS"] = "1"
    args.run(args)
    return 0


# The commands that may run torch on many small utterances one by one.
ONE_THREAD = ("speed_perturb", "format", "kmeans_labels")


def _fsdd_data(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.prepare import PrepareConfig, prepare_fsdd

    prepare_fsdd(PrepareConfig(
        task=args.task, fsdd=args.fsdd, data_dir=args.data_dir,
        heldout_speaker=args.heldout_speaker or None,
        speakers=[s for s in args.speakers.split(",") if s] or None,
        train_takes=args.train_takes, dev_takes=args.dev_takes, test_takes=args.test_takes,
        heldout_takes=args.heldout_takes, min_digits=args.min_digits,
        max_digits=args.max_digits, seed=args.seed,
        train_single_takes=args.train_single_takes == "true", download=not args.no_download,
        url=args.url,
    ))


def _librispeech_data(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe import librispeech

    sets = {}
    for item in args.sets:
        name, sep, parts = item.partition("=")
        if not sep or not name or not parts:
            raise ValueError(f"--set {item!r}: expected NAME=PART[,PART...]")
        sets[name] = [p for p in parts.replace(",", " ").split() if p]
    librispeech.prepare(args.librispeech, args.data_dir, sets,
                        download=not args.no_download, max_utts=args.max_utts)


def _slurp_data(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe import slurp

    slurp.prepare(args.slurp, args.data_dir, use_synthetic=args.use_synthetic == "true",
                  train_recordings=args.train_recordings,
                  eval_recordings=args.eval_recordings, max_utts=args.max_utts)


def _covost2_data(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe import covost2

    covost2.prepare(args.commonvoice, args.covost2, args.data_dir,
                    download=not args.no_download, max_utts=args.max_utts)


def _speechocean762_data(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe import speechocean762

    speechocean762.prepare(
        args.speechocean762, args.data_dir,
        n_dev_speakers=args.dev_speakers or speechocean762.DEFAULT_DEV_SPEAKERS,
        max_utts=args.max_utts, download=not args.no_download,
        url=args.url or speechocean762.URL)


def _speed_perturb(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.format import speed_perturb

    speed_perturb(args.src, args.dst, args.factors)


def _format(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.format import format_data_dir

    for src, dst in paired(args.src, args.dst, "src", "dst"):
        format_data_dir(src, dst, args.fs, required=args.required)


def _filter(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.format import filter_lengths

    kept, dropped = filter_lengths(args.src, args.dst, args.fs, args.min, args.max,
                                   args.text_files)
    print(f"progress: {args.dst}: kept {kept}, filtered out {len(dropped)}", flush=True)


def _token_list(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.tokens import make_token_list

    out = make_token_list(args.text, args.out, args.token_type, args.nbpe, args.bpemode,
                          add_blank=not args.no_blank,
                          nbpe_fit_data=args.nbpe_fit_data == "true",
                          nbpe_option=args.nbpe_option)
    n = sum(1 for _ in open(out, encoding="utf-8"))
    print(f"progress: {out}: {n} tokens ({args.token_type})", flush=True)


def _kmeans_labels(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.units import kmeans_labels

    kmeans_labels(args.data_dir, args.out, args.n_clusters, args.kmeans, args.max_utts,
                  args.seed, args.token_list)


def _score(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.scoring import score_files

    result = score_files(args.task, args.ref, args.hyp, args.out, info=args.info,
                         metric=args.metric)
    print(f"progress: {args.hyp}: {result['summary']}", flush=True)


def _score_all(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.scoring import score_decode_dir

    for result in score_decode_dir(args.task, args.decode_dir, args.data_root, args.metric):
        print(f"progress: {result['hyp']}: {result['summary']}", flush=True)


def _results(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.results import write_results

    write_results(args.exp_dirs, args.out, plot=args.plot, title=args.title,
                  notes=args.notes, smoke=args.smoke == "true")
    print(f"progress: wrote {args.out}" + (f" and {args.plot}" if args.plot else ""),
          flush=True)


def _compare(args: argparse.Namespace) -> None:
    from espnet_ofa.data.datadir import atomic_write_text
    from espnet_ofa.recipe.results import paired_comparison

    text = "\n".join(paired_comparison(args.a, args.b, tuple(args.labels)))
    if args.out:
        atomic_write_text(args.out, text)
        print(f"progress: wrote {args.out}", flush=True)
    else:
        print(text, flush=True)


def _plan(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.experiments import plan_experiments

    for e in plan_experiments(args.task, args.configs, args.expdir, args.train_frame_periods,
                              args.fixed_rate_periods, args.ofa_model, args.seeds,
                              args.single_rate_periods, args.ssl_seeds,
                              args.pooled_periods, args.jitter_control == "true",
                              args.teacher_pooled_periods, args.teacher,
                              args.teacher_pending == "true"):
        print(e.line())


def _ssl_plan(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.experiments import plan_students

    for student in plan_students(args.ssl_exp, args.fixed_rate_periods,
                                 args.single_rate_periods, args.ssl_seeds):
        print(student.line())


def _trained_range(args: argparse.Namespace) -> None:
    from espnet_ofa.models.trained_range import record_trained_range

    measured = record_trained_range(args.exp_dir, args.data_dir, args.model_file,
                                    args.max_utts)
    print(f"progress: {args.exp_dir}: " + (
        "trained over the periods it sampled" if measured is None else
        "mean alpha {mean_alpha:.4f} over {frames} frames: serves {lo:.1f}-{hi:.1f} ms".format(
            lo=measured["frame_period_range"][0], hi=measured["frame_period_range"][1],
            **measured)), flush=True)


def _resume_check(args: argparse.Namespace) -> None:
    from espnet_ofa.recipe.resume import set_aside_damaged_checkpoints

    for note in set_aside_damaged_checkpoints(args.exp_dir):
        print(f"progress: {note}", flush=True)



COMMANDS = {
    "fsdd_data": _fsdd_data,
    "librispeech_data": _librispeech_data,
    "slurp_data": _slurp_data,
    "covost2_data": _covost2_data,
    "speechocean762_data": _speechocean762_data,
    "speed_perturb": _speed_perturb,
    "format": _format,
    "filter": _filter,
    "token_list": _token_list,
    "kmeans_labels": _kmeans_labels,
    "score": _score,
    "score_all": _score_all,
    "results": _results,
    "compare": _compare,
    "plan": _plan,
    "ssl_plan": _ssl_plan,
    "trained_range": _trained_range,
    "resume_check": _resume_check,
}



if __name__ == "__main__":
    sys.exit(main())
