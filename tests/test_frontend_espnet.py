"""``frontend: ofa`` through UNMODIFIED ESPnet entry points, on real audio.

Each task (asr, slu, st) runs ESPnet's two-step training (``--collect_stats true``, then one
short epoch) and decodes with its ``*_inference``, all as ``python -m espnet2.bin.*``
subprocesses: fresh interpreters, so this also proves that the installed import hook
registers the frontend. Audio: 30 train / 10 test utterances of ``an4_small`` (16 kHz).
The OFA model is a tiny random-weight student: the point is the plumbing, not accuracy.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
import yaml

from conftest import recipe_env

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "tuning"

# Intent of each an4_small command (SLU target: "<intent> <words>", ESPnet's SLU format).
INTENTS = {"yes": "answer", "no": "answer", "stop": "command", "start": "command",
           "repeat": "command", "help": "command", "go": "command"}
# Word-by-word "German" for the ST target: clearly synthetic, over real English speech.
GERMAN = {"yes": "ja", "no": "nein", "stop": "halt", "start": "start", "repeat": "wiederholen",
          "help": "hilfe", "go": "los", "one": "eins", "two": "zwei", "three": "drei",
          "thirty": "dreißig", "forty": "vierzig", "fifty": "fünfzig", "hundred": "hundert",
          "nineteen": "neunzehn"}


def intent_of(text: str) -> str:
    return INTENTS.get(text, "number")


def write_char_tokens(texts: List[str], path: Path) -> Path:
    chars = sorted({c for t in texts for c in t.replace(" ", "")})
    path.write_text("\n".join(["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"]) + "\n",
                    encoding="utf-8")
    return path


def write_word_tokens(texts: List[str], path: Path) -> Path:
    words = sorted({w for t in texts for w in t.split()})
    path.write_text("\n".join(["<blank>", "<unk>", *words, "<sos/eos>"]) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_ofa_checkpoint, an4_small) -> Path:
    """A tiny OFA checkpoint, data dirs (wav.scp, text, text.de, utt2spk) and token lists."""
    root = tmp_path_factory.mktemp("espnet_ofa")
    shutil.copytree(tiny_ofa_checkpoint.parent, root / "exp" / "ofa")

    texts: Dict[str, List[str]] = {"en": [], "slu": [], "de": []}
    for split in ("train", "test"):
        lines = (an4_small / f"{split}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        ids = [f"{split}_{i:03d}" for i in range(len(rows))]
        d = root / "data" / split
        d.mkdir(parents=True)
        en = [r["text"] for r in rows]
        slu = [f"{intent_of(t)} {t}" for t in en]
        de = [" ".join(GERMAN[w] for w in t.split()) for t in en]
        for name, values in (("wav.scp", [str(an4_small / r["audio"]) for r in rows]),
                             ("text", en), ("text.slu", slu), ("text.de", de), ("utt2spk", ids)):
            (d / name).write_text("".join(f"{u} {v}\n" for u, v in zip(ids, values)),
                                  encoding="utf-8")
        texts["en"] += en
        texts["slu"] += slu
        texts["de"] += de
    write_char_tokens(texts["en"], root / "tokens.en.txt")
    write_char_tokens(texts["de"], root / "tokens.de.txt")
    write_word_tokens(texts["slu"], root / "tokens.slu.txt")
    return root


def run_espnet(module: str, args: List[str], cwd: Path, log: str,
               env: Optional[Dict[str, str]] = None) -> str:
    """Run ``python -m module args`` in ``cwd``; fail with the log's tail if it fails."""
    full_env = {**recipe_env(), "OMP_NUM_THREADS": "1", **(env or {})}
    # A guard against a hung process, not a speed limit: a busy machine takes minutes.
    proc = subprocess.run(["python3", "-m", module, *args], cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200)
    (cwd / log).write_text(proc.stdout)
    assert proc.returncode == 0, f"{module} failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    return proc.stdout


def data_args(kind: str, entries: List[tuple]) -> List[str]:
    out = []
    for split, arg in (("train", f"--train_{kind}"), ("test", f"--valid_{kind}")):
        for file, name, ftype in entries:
            out += [arg, f"data/{split}/{file},{name},{ftype}"]
    return out


def train_two_steps(work: Path, task: str, conf: Path, common: List[str],
                    shapes: List[str], fold: List[str], out: str,
                    extra: Optional[List[str]] = None, stats: Optional[str] = None) -> str:
    """ESPnet's two steps: collect stats (shape files, feats_stats.npz), then train."""
    module = f"espnet2.bin.{task}_train"
    stats = stats or f"exp/{out}_stats"
    base = ["--config", str(conf), "--frontend_conf", "model=exp/ofa/valid.loss.best.pth",
            "--ngpu", "0", "--num_workers", "0", *common]
    if not (work / stats / "train" / "feats_stats.npz").is_file():
        run_espnet(module, [*base, "--collect_stats", "true", "--output_dir", stats,
                            "--train_shape_file", "data/train/wav.scp",
                            "--valid_shape_file", "data/test/wav.scp"],
                   work, f"{out}_stats.log")
    shape_args = []
    for shape in shapes:
        shape_args += ["--train_shape_file", f"{stats}/train/{shape}",
                       "--valid_shape_file", f"{stats}/valid/{shape}"]
    for length in fold:
        shape_args += ["--fold_length", length]
    # No loss plots (each costs ~2 s): the learnt-rate DDP test checks the one that matters.
    return run_espnet(module, [*base, *shape_args, "--num_att_plot", "0", "--use_matplotlib", "false",
                               "--normalize", "global_mvn", "--normalize_conf",
                               f"stats_file={stats}/train/feats_stats.npz",
                               "--output_dir", f"exp/{out}", *(extra or [])],
                      work, f"{out}_train.log")


def decode(work: Path, task: str, out: str, extra: List[str],
           env: Optional[Dict[str, str]] = None) -> List[str]:
    exp = f"exp/{out}"
    run_espnet(f"espnet2.bin.{task}_inference",
               ["--ngpu", "0", "--data_path_and_name_and_type", "data/test/wav.scp,speech,sound",
                f"--{task}_train_config", f"{exp}/config.yaml",
                f"--{task}_model_file", f"{exp}/valid.loss.best.pth",
                "--output_dir", f"{exp}/decode", "--beam_size", "2", *extra],
               work, f"{out}_decode.log", env=env)
    return (work / exp / "decode" / "1best_recog" / "text").read_text().splitlines()


def epoch_results(log: str) -> str:
    lines = [line for line in log.splitlines() if "epoch results" in line]
    assert lines, "no epoch results in the training log"
    return lines[-1]


ASR_COMMON = ["--use_preprocessor", "true", "--token_type", "char",
              "--token_list", "tokens.en.txt", "--cleaner", "none", "--g2p", "none",
              "--non_linguistic_symbols", "none",
              *data_args("data_path_and_name_and_type",
                         [("wav.scp", "speech", "sound"), ("text", "text", "text")])]


SLU_COMMON = ["--use_preprocessor", "true", "--token_type", "word",
              "--token_list", "tokens.slu.txt", "--cleaner", "none", "--g2p", "none",
              "--non_linguistic_symbols", "none",
              *data_args("data_path_and_name_and_type",
                         [("wav.scp", "speech", "sound"), ("text.slu", "text", "text")])]
ST_COMMON = ["--use_preprocessor", "true", "--token_type", "char",
             "--token_list", "tokens.de.txt", "--src_token_type", "char",
             "--src_token_list", "tokens.en.txt", "--cleaner", "none", "--g2p", "none",
             "--non_linguistic_symbols", "none",
             *data_args("data_path_and_name_and_type",
                        [("wav.scp", "speech", "sound"), ("text.de", "text", "text"),
                         ("text", "src_text", "text")])]


@pytest.fixture(scope="module")
def asr_log(work) -> str:
    """exp/asr: ESPnet's two steps for ASR; the training log."""
    return train_two_steps(work, "asr", CONF / "train_asr_ofa_tiny.yaml", ASR_COMMON,
                           ["speech_shape", "text_shape"], ["80000", "150"], "asr")


@pytest.fixture(scope="module")
def slu_log(work) -> str:
    return train_two_steps(work, "slu", CONF / "train_slu_ofa_tiny.yaml", SLU_COMMON,
                           ["speech_shape", "text_shape"], ["80000", "150"], "slu")


@pytest.fixture(scope="module")
def st_log(work) -> str:
    return train_two_steps(work, "st", CONF / "train_st_ofa_tiny.yaml", ST_COMMON,
                           ["speech_shape", "text_shape", "src_text_shape"],
                           ["80000", "150", "150"], "st")


@pytest.fixture(scope="module")
def packed(work, asr_log, slu_log, st_log) -> Path:
    """packed/{asr,slu,st}.zip: the three models packed for the model zoo (OFA model inside)."""
    from espnet_ofa.zoo.downstream import pack_downstream

    cwd = os.getcwd()
    os.chdir(work)
    try:
        for task in ("asr", "slu", "st"):
            pack_downstream(task, f"exp/{task}/config.yaml", f"exp/{task}/valid.loss.best.pth",
                            f"packed/{task}.zip")
    finally:
        os.chdir(cwd)
    return work / "packed"


def test_asr_train_and_decode(work, asr_log):
    log = asr_log
    assert "frame_period=60.000" in epoch_results(log)
    config = yaml.safe_load((work / "exp/asr/config.yaml").read_text())
    assert config["frontend"] == "ofa" and config["frontend_conf"]["frame_period"] == 60
    hyps = decode(work, "asr", "asr", ["--ctc_weight", "0.3"])
    assert len(hyps) == 10 and all(h.startswith("test_") for h in hyps)


def test_asr_learnable_rate_in_ddp_is_trained_logged_saved_and_decoded(work, asr_log):
    """learnable_rate through ESPnet's real trainer under DDP with two CPU processes (gloo),
    started by torchrun: ESPnet's own launcher only spawns workers for GPUs, so this is its
    external-launcher mode. Each worker must see ``frontend: ofa`` (the import hook) and the
    rate hooks must run inside DDP's forward; the rate is logged, plotted, saved and decoded
    with. (Without DDP, the recipes' learnt-rate experiments train it: test_recipe_*.)"""
    module = "espnet2.bin.asr_train"
    stats = "exp/asr_stats"  # asr_log's
    args = ["--config", str(CONF / "train_asr_ofa_tiny.yaml"),
            "--frontend_conf", "model=exp/ofa/valid.loss.best.pth", "--ngpu", "0",
            "--num_workers", "0", *ASR_COMMON,
            "--num_att_plot", "0", "--normalize", "global_mvn",
            "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
            "--fold_length", "80000", "--fold_length", "150", "--output_dir", "exp/asr_ddp",
            "--frontend_conf", "learnable_rate=true", "--frontend_conf", "frame_period=50",
            "--frontend_conf", "rate_cost=0.05",
            "--max_epoch", "2", "--multiprocessing_distributed", "false", "--dist_backend", "gloo"]
    for shape in ("speech_shape", "text_shape"):
        args += ["--train_shape_file", f"{stats}/train/{shape}",
                 "--valid_shape_file", f"{stats}/valid/{shape}"]
    log = run_espnet("torch.distributed.run", ["--standalone", "--nproc_per_node", "2",
                                               "-m", module, *args], work, "asr_ddp.log")
    results = epoch_results(log)
    assert results.startswith("[") and ":0/2]" in results  # rank 0 of a world of 2
    assert "frame_period=" in results and "rate_slope=" in results
    assert (work / "exp/asr_ddp/images/frame_period.png").is_file()
    state = torch.load(work / "exp/asr_ddp/valid.loss.best.pth", map_location="cpu")
    assert "frontend.rate.raw" in state
    # The raw parameter moved away from its start (50 ms): it was trained.
    from espnet_ofa.frontend.learnable_rate import LearnableRate

    start = LearnableRate(50.0, 20.0, 90.0)
    assert float(state["frontend.rate.raw"]) != pytest.approx(float(start.raw.detach()), abs=1e-6)
    hyps = decode(work, "asr", "asr_ddp", ["--ctc_weight", "0.3"])
    assert len(hyps) == 10


def test_asr_decoding_rate_override(work, asr_log):
    """At decoding, ESPNET_OFA_FRAME_PERIOD changes the period of the trained model."""
    script = (
        "import sys, torch\n"
        "from espnet2.bin.asr_inference import Speech2Text\n"
        "s2t = Speech2Text(asr_train_config='exp/asr/config.yaml',"
        " asr_model_file='exp/asr/valid.loss.best.pth')\n"
        "wav = torch.zeros(1, 16000).normal_(0, 0.1)\n"
        "_, n = s2t.asr_model.encode(wav, torch.tensor([16000]))\n"
        "s2t.asr_model.frontend.set_rate(frame_period=90)\n"
        "_, m = s2t.asr_model.encode(wav, torch.tensor([16000]))\n"
        "print('LENGTHS', int(n), int(m))\n"
    )
    env = {**recipe_env(), "ESPNET_OFA_FRAME_PERIOD": "40", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["python3", "-c", script], cwd=work, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("LENGTHS")][-1]
    frames = (16000 - 400) // 320 + 1  # 49 frames of 20 ms
    assert line.split()[1:] == [str(round(frames * 20 / 40)), str(round(frames * 20 / 90))]


def test_slu_train_and_decode(work, slu_log):
    assert "frame_period=80.000" in epoch_results(slu_log)
    hyps = decode(work, "slu", "slu", ["--ctc_weight", "0.3"])
    assert len(hyps) == 10


def test_several_models_decoded_in_one_process(work, asr_log, slu_log, tmp_path,
                                               monkeypatch, capsys):
    """s2t.sh's stage 12 decodes several experiments through one ``espnet_ofa.bin.decode``
    process, one args file each: what each writes is what a process of its own writes, and
    each logs into its own ``<out_dir>/logdir/decode.<split>.log``."""
    from espnet_ofa.bin import decode as cli

    monkeypatch.chdir(work)

    def request(task: str, out: Path) -> List[str]:
        return ["--task", task, "--train_config", f"exp/{task}/config.yaml",
                "--model_file", f"exp/{task}/valid.loss.best.pth", "--data_dirs", "data/test",
                "--out_dir", str(out), "--frame_periods", "40", "80", "--num_splits", "2",
                "--macs_utts", "0"]

    files = []
    for task in ("asr", "slu"):
        args = tmp_path / f"{task}.args"
        args.write_text("\n".join(request(task, tmp_path / "bundle" / task)) + "\n")
        files += ["--args_file", str(args)]
    assert cli.main([*files, "--split", "2"]) == 0
    for task in ("asr", "slu"):
        assert cli.main([*request(task, tmp_path / "alone" / task), "--split", "2"]) == 0
        for tag in ("p40", "p80"):
            bundled = (tmp_path / "bundle" / task / tag / "test/split2/2/text").read_text()
            alone = (tmp_path / "alone" / task / tag / "test/split2/2/text").read_text()
            assert len(bundled.splitlines()) == 5 and bundled == alone
        log = (tmp_path / "bundle" / task / "logdir/decode.2.log").read_text()
        assert [line.split(":")[1] for line in log.splitlines() if "progress" in line] == [
            " decoded test at p40", " decoded test at p80"]
    # Options of the process (here --split) belong on its command line, not in a file;
    # a decoding's options are not mixed with --args_file.
    bad = tmp_path / "bad.args"
    bad.write_text("\n".join([*request("asr", tmp_path / "x"), "--split", "2"]) + "\n")
    capsys.readouterr()
    assert cli.main(["--args_file", str(bad)]) == 1
    assert "--split cannot be in an args file" in capsys.readouterr().err
    assert cli.main([*files, "--frame_periods", "40"]) == 1
    assert "--frame_periods cannot be combined with --args_file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_st_train_and_decode(work, st_log):
    assert "frame_period=60.000" in epoch_results(st_log)
    hyps = decode(work, "st", "st", [])
    assert len(hyps) == 10


def _registered_in_child(queue) -> None:
    import espnet2.tasks.asr
    import espnet2.tasks.asr_transducer
    import espnet2.tasks.slu
    import espnet2.tasks.st

    queue.put({m.__name__: "ofa" in m.frontend_choices.classes
               for m in (espnet2.tasks.asr, espnet2.tasks.slu, espnet2.tasks.st,
                         espnet2.tasks.asr_transducer)})


def test_registration_seen_in_spawned_process():
    """What ESPnet's DDP workers are: fresh ``spawn`` interpreters that never ran our code."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_registered_in_child, args=(queue,))
    proc.start()
    result = queue.get(timeout=300)
    proc.join(timeout=60)
    assert result == {"espnet2.tasks.asr": True, "espnet2.tasks.slu": True,
                      "espnet2.tasks.st": True, "espnet2.tasks.asr_transducer": True}


def test_import_hook_is_lazy_and_can_be_disabled():
    """The .pth imports neither torch nor ESPnet at start-up; the env var turns it off."""
    probe = ("import sys; print('torch' in sys.modules, 'espnet2' in sys.modules,"
             " any(getattr(f, 'espnet_ofa_hook', False) for f in sys.meta_path))")
    out = subprocess.run([sys.executable, "-c", probe], text=True, capture_output=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "True"], "espnet_ofa_register.pth missing: run tools/install.sh"
    env = {**os.environ, "ESPNET_OFA_NO_IMPORT_HOOK": "1"}
    out = subprocess.run([sys.executable, "-c", probe], text=True, capture_output=True,
                         check=True, env=env).stdout.split()
    assert out == ["False", "False", "False"]


def test_explicit_register_without_the_hook():
    """Library use: ``espnet_ofa.register()`` before or after importing the task modules."""
    script = (
        "import sys, espnet_ofa\n"
        "import espnet2.tasks.asr as asr\n"
        "before = 'ofa' in asr.frontend_choices.classes\n"
        "done = espnet_ofa.register()\n"
        "import espnet2.tasks.st as st  # imported after register(): the hook it armed\n"
        "tasks = [m for m in done if m.startswith('espnet2.tasks')]  # s3prl may be there too\n"
        "print(before, tasks, 'ofa' in asr.frontend_choices.classes,"
        " 'ofa' in st.frontend_choices.classes)\n"
    )
    env = {**os.environ, "ESPNET_OFA_NO_IMPORT_HOOK": "1"}
    out = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2] == "False ['espnet2.tasks.asr'] True True"


PACKED_ROUND_TRIP = r"""
import json, os, sys, torch
import soundfile as sf
from espnet2.bin.asr_inference import Speech2Text
from espnet2.bin.slu_inference import Speech2Understand
from espnet2.bin.st_inference import Speech2Text as Speech2Translation
from espnet_ofa.inference import load_pretrained, set_frame_period

work, wavs = sys.argv[1], sys.argv[2:]
audio = [torch.tensor(sf.read(w, dtype="float32")[0]) for w in wavs]

def hyps(s2x):
    return [s2x(a)[0][0] for a in audio]

out = {}
# Packed models first, from a directory where exp/ does not exist...
after = load_pretrained(f"{work}/packed/asr.zip", "asr", frame_period=40.0, beam_size=2)
packed = {"slu": Speech2Understand.from_pretrained(f"{work}/packed/slu.zip", beam_size=2),
          "st": Speech2Translation.from_pretrained(f"{work}/packed/st.zip", beam_size=2)}
# ... then the originals, whose configs name exp/ofa/... relative to the work dir.
os.chdir(work)
before = Speech2Text(asr_train_config="exp/asr/config.yaml",
                     asr_model_file="exp/asr/valid.loss.best.pth", beam_size=2)
for period in (40.0, 80.0):
    set_frame_period(before, period)
    set_frame_period(after, period)  # between calls, no reload
    out[f"asr{period:g}"] = [hyps(before), hyps(after)]
    out[f"asr{period:g}_len"] = int(after.asr_model.encode(audio[0][None],
                                    torch.tensor([len(audio[0])]))[1])
for task, cls, key in (("slu", Speech2Understand, "slu"), ("st", Speech2Translation, "st")):
    ref = cls(**{f"{key}_train_config": f"exp/{task}/config.yaml",
                 f"{key}_model_file": f"exp/{task}/valid.loss.best.pth"}, beam_size=2)
    out[task] = [hyps(ref), hyps(packed[task])]
print("RESULT", json.dumps(out))
"""


def test_packed_models_decode_like_the_originals(work, packed, tmp_path):
    """Model zoo round trip: pack (OFA checkpoint inside), unpack elsewhere with ESPnet's
    own unmodified from_pretrained, decode at two periods: same hypotheses."""
    wavs = [line.split()[1] for line in (work / "data/test/wav.scp").read_text().splitlines()[:4]]
    # Another directory and another HOME (espnet_model_zoo's cache): nothing resolves to work/exp.
    env = {**recipe_env(), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["python3", "-c", PACKED_ROUND_TRIP, str(work), *wavs],
                          cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for key in ("asr40", "asr80", "slu", "st"):
        original, packed = out[key]
        assert packed == original, key
    assert any(out["asr40"][0]), "empty hypotheses would make the comparison vacuous"
    frames = (len(__import__("soundfile").read(wavs[0])[0]) - 400) // 320 + 1
    assert out["asr40_len"] == round(frames * 20 / 40)
    assert out["asr80_len"] == round(frames * 20 / 80)
    assert any(p.name.endswith("pth") for p in tmp_path.rglob("*.pth"))  # unpacked under HOME


def test_transcribe_cli_resamples_and_reports_rtf(work, packed, fsdd_recordings, monkeypatch,
                                                  capsys):
    """python -m espnet_ofa.bin.transcribe on the packed ASR model: 8 kHz input resampled;
    a period outside the model's range exits 2 with the range (that half runs ``main`` in
    this process: a second interpreter would only add ESPnet's start-up)."""
    fsdd = fsdd_recordings / "3_theo_0.wav"
    an4 = (work / "data/test/wav.scp").read_text().splitlines()[0].split()[1]
    env = {**recipe_env(), "HOME": str(work / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["python3", "-m", "espnet_ofa.bin.transcribe", "--model", "packed/asr.zip",
         "--frame-period", "60", "--beam-size", "2", str(fsdd), an4],
        cwd=work, env=env, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(fsdd), an4]
    assert f"{fsdd}: resampled from 8000 Hz to 16000 Hz" in proc.stderr
    assert "real-time factor:" in proc.stderr
    from espnet_ofa.bin.transcribe import main

    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work / "home"))
    with pytest.raises(SystemExit) as bad:
        main(["--model", "packed/asr.zip", "--frame-period", "150", an4])
    assert bad.value.code == 2 and "outside the range" in capsys.readouterr().err
