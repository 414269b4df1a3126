"""Unit tests of scoring (WER/CER, intent accuracy, BLEU), RESULTS.md and the plot, and
the split-decoding merge."""

import json
import subprocess
from pathlib import Path

import pytest

from espnet_ofa.recipe.decode import merge_splits, rate_tag
from espnet_ofa.recipe.results import SMOKE_BANNER, collect, render, write_results
from espnet_ofa.recipe.scoring import score, score_decode_dir, score_files


def test_asr_scores():
    r = score("asr", {"a": "one two three", "b": "four five"}, {"a": "one two tree", "b": "four five"})
    assert r["metric"] == "WER" and r["WER"] == pytest.approx(100 * 1 / 5)
    assert r["substitutions"] == 1 and r["num_words"] == 5
    assert r["SER"] == pytest.approx(50.0)
    assert r["CER"] > 0 and "WER 20.00%" in r["summary"]


def test_missing_hypotheses_count_as_empty():
    r = score("asr", {"a": "one two", "b": "three"}, {"a": "one two"})
    assert r["missing"] == ["b"] and r["WER"] == pytest.approx(100 / 3)
    assert "1 without hypothesis" in r["summary"]
    with pytest.raises(ValueError, match="not in the reference"):
        score("asr", {"a": "one"}, {"zz": "one"})


def test_slu_accuracy_on_the_intent():
    ref = {"a": "billing one", "b": "sales two", "c": "cancel nine"}
    hyp = {"a": "billing one", "b": "sales three", "c": "operator nine"}
    r = score("slu", ref, hyp)
    assert r["metric"] == "accuracy" and r["accuracy"] == pytest.approx(200 / 3)
    assert r["WER"] == pytest.approx(100 / 3)


def test_st_bleu():
    ref = {"a": "drei eins vier eins", "b": "null zwei acht fünf"}
    perfect = score("st", ref, dict(ref))
    assert perfect["BLEU"] == pytest.approx(100.0)
    worse = score("st", ref, {"a": "drei eins vier", "b": "null zwei"})
    assert 0 <= worse["BLEU"] < 100 and "BLEU" in worse["bleu_signature"]


def _decode_tree(root: Path, exp: str = "asr_a", learned: bool = False) -> Path:
    exp_dir = root / "exp" / exp
    for period, hyp in ((20.0, "one two"), (40.0, "one too")):
        d = exp_dir / "decode_asr" / rate_tag(None if learned else period) / "test"
        d.mkdir(parents=True, exist_ok=True)
        (d / "text").write_text(f"u1 {hyp}\nu2 three\n")
        info = {"rate": d.parent.name, "frame_period": 47.5 if learned else period,
                "learned": learned, "achieved_period": period + 0.1, "num_utts": 2,
                "rtf": 0.01, "gmacs_per_second": 0.5 / period, "test_set": "test"}
        (d / "info.json").write_text(json.dumps(info))
        if learned:
            break
    (root / "dump/test").mkdir(parents=True, exist_ok=True)
    (root / "dump/test/text").write_text("u1 one two\nu2 three\n")
    return exp_dir


def test_score_dir_results_md_and_plot(tmp_path):
    fixed = _decode_tree(tmp_path)
    learned = _decode_tree(tmp_path, "asr_learned", learned=True)
    for exp in (fixed, learned):
        results = score_decode_dir("asr", exp / "decode_asr", tmp_path / "dump")
        assert all((Path(r["hyp"]).parent / "result.json").is_file() for r in results)
    rows = collect([fixed, learned])
    assert len(rows) == 3 and {r["rate"] for r in rows} == {"p20", "p40", "learned"}
    out = tmp_path / "RESULTS.md"
    notes = tmp_path / "notes.md"
    notes.write_text("Synthetic labels, see data/README.txt.\n")
    write_results([fixed, learned], out, plot=tmp_path / "RESULTS.png", notes=notes)
    text = out.read_text()
    assert "# RESULTS" in text and "## Environments" in text and "Synthetic labels" in text
    assert "|test|20|20.1|2|0.00|" in text
    assert "|test|40|40.1|2|33.33|" in text
    assert "learned (47.5)" in text and "espnet version" in text
    assert (tmp_path / "RESULTS.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no scored decodings"):
        write_results([tmp_path / "nothing"], out)
    # The code that made them: the commit, "-dirty" with uncommitted changes.
    describe = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, cwd=Path(__file__).parent).stdout.strip()
    assert describe and f"- git describe: `{describe}`" in text
    assert SMOKE_BANNER not in text


def test_smoke_runs_are_labelled_not_a_result(tmp_path):
    """Stage 13 of a --smoke true run (s2t.sh passes --smoke true to the results command)."""
    from espnet_ofa.bin.recipe import main

    exp = _decode_tree(tmp_path)
    score_decode_dir("asr", exp / "decode_asr", tmp_path / "dump")
    out = tmp_path / "RESULTS.md"
    assert main(["results", "--exp_dirs", str(exp), "--out", str(out), "--smoke", "true"]) == 0
    lines = out.read_text().splitlines()
    assert lines[1] == "# RESULTS" and lines[3] == SMOKE_BANNER  # on top, before any number
    assert "not a result" in SMOKE_BANNER
    assert main(["results", "--exp_dirs", str(exp), "--out", str(out)]) == 0
    assert SMOKE_BANNER not in out.read_text()


def test_render_other_metrics():
    rows = [{"exp": "exp/slu", "decode": "d", "test_set": "test", "frame_period": 80.0,
             "learned": False, "metric": "accuracy", "value": 91.0, "accuracy": 91.0,
             "WER": 3.0, "num_utts": 10, "achieved_period": 80.0, "gmacs_per_second": 0.01,
             "rtf": 0.02}]
    text = render(rows, env={"date": "now"})
    assert "|dataset|period (ms)|achieved (ms)|Snt|Acc (%)|WER (%)|GMACs/s|RTF|" in text
    assert "|test|80|80.0|10|91.00|3.00|0.0100|0.0200|" in text


def test_score_files_requires_hypotheses(tmp_path):
    (tmp_path / "ref").write_text("u1 one\n")
    with pytest.raises(FileNotFoundError, match="run the decoding stage"):
        score_files("asr", tmp_path / "ref", tmp_path / "hyp", tmp_path / "r.json")
    (tmp_path / "hyp").write_text("")  # a decoding that produced nothing
    r = score_files("asr", tmp_path / "ref", tmp_path / "hyp", tmp_path / "r.json")
    assert r["WER"] == pytest.approx(100.0) and r["missing"] == ["u1"]


def test_merge_splits(tmp_path):
    d = tmp_path / "p40/test"
    for j, (utts, secs) in enumerate(((["u1", "u3"], 2.0), (["u2"], 1.0)), start=1):
        part = d / "split2" / str(j)
        part.mkdir(parents=True)
        (part / "text").write_text("".join(f"{u} one\n" for u in utts))
        (part / "token").write_text("".join(f"{u} one\n" for u in utts))
        (part / "info.json").write_text(json.dumps({
            "rate": "p40", "num_utts": len(utts), "audio_seconds": secs, "decode_seconds": secs / 10,
            "frontend_seconds": secs / 20, "encoder_seconds": secs / 40,
            "frames_20ms": 100 * j, "frames_out": 50 * j, "macs": 10 ** 9, "macs_audio_seconds": 1.0}))
    merged = merge_splits(d, 2)
    assert (d / "text").read_text() == "u1 one\nu2 one\nu3 one\n"
    assert merged["num_utts"] == 3 and merged["rtf"] == pytest.approx(0.1)
    assert merged["achieved_period"] == pytest.approx(40.0)
    assert merged["gmacs_per_second"] == pytest.approx(1.0)
    # The RTF's parts are summed over the jobs like the RTF itself.
    assert merged["frontend_seconds"] == pytest.approx(0.15)
    assert merged["encoder_seconds"] == pytest.approx(0.075)
    assert json.loads((d / "info.json").read_text()) == merged
    (d / "split2/2/info.json").unlink()
    with pytest.raises(FileNotFoundError, match="did not finish"):
        merge_splits(d, 2)


def test_summary_of_a_model_per_period(tmp_path):
    """With --train_frame_periods: each model at its own period on top, and the plot."""
    rows = []
    for trained in (20.0, 80.0):
        for period in (20.0, 80.0):
            rows.append({"exp": f"exp/asr_p{trained:g}", "decode": "d", "test_set": "test",
                         "frame_period": period, "train_frame_period": trained,
                         "learned": False, "metric": "WER", "value": 5.0 + abs(trained - period),
                         "WER": 5.0 + abs(trained - period), "num_utts": 3,
                         "achieved_period": period, "gmacs_per_second": 1.0 / period, "rtf": 0.1})
    rows.append({"exp": "exp/asr_learned", "decode": "d", "test_set": "test", "frame_period": 47.0,
                 "train_frame_period": None, "learned": True, "metric": "WER", "value": 4.0,
                 "WER": 4.0, "num_utts": 3, "achieved_period": 47.1, "gmacs_per_second": 0.02,
                 "rtf": 0.1})
    text = render(rows, env={"date": "now"})
    summary = text[text.index("## Summary"):text.index("## exp/")]
    assert "|test|20|20.0|3|5.00|-|-|0.0500|0.1000|asr_p20|" in summary
    assert "|test|80|80.0|3|5.00|-|-|0.0125|0.1000|asr_p80|" in summary
    assert "|test|learned (47.0)|47.1|3|4.00|" in summary and "65.00" not in summary
    assert "Model trained at 20 ms." in text and "Model learns its frame period." in text
    from espnet_ofa.recipe.results import plot_results

    plot_results(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10000
    one_model = render([r for r in rows if r["exp"] == "exp/asr_p20"], env={"date": "now"})
    assert "## Summary" not in one_model


def _scored(root: Path, exp: str, period: float, errors, test_set: str = "test") -> Path:
    """<root>/<exp>/decode_asr/p<period>/<test_set>/result.json, 5 words per utterance."""
    exp_dir = root / exp
    d = exp_dir / "decode_asr" / rate_tag(period) / test_set
    d.mkdir(parents=True)
    value = 100.0 * sum(errors) / (5 * len(errors))
    (d / "result.json").write_text(json.dumps({
        "metric": "WER", "value": value, "WER": value, "frame_period": period,
        "train_frame_period": period, "learned": False, "frontend": "ofa",
        "compression": "cif", "ssl_period_range": [20.0, 90.0], "num_utts": len(errors),
        "per_utt": {f"u{i:02d}": [e, 5] for i, e in enumerate(errors)}}))
    return exp_dir


def test_compare_two_sets_of_experiments_per_rate(tmp_path):
    """``recipe compare``: e.g. the cnn and mel fronts' downstreams, paired per test set and
    rate, b - a with its interval; a side with two models at one rate, or nothing shared,
    is an error that says so."""
    from espnet_ofa.bin.recipe import main
    from espnet_ofa.recipe.results import paired_comparison

    base = [i % 2 for i in range(40)]  # 20 errors in 200 words: 10 %
    cnn = [_scored(tmp_path / "cnn", "asr_p40", 40.0, base),
           _scored(tmp_path / "cnn", "asr_p80", 80.0, base)]
    mel = [_scored(tmp_path / "mel", "asr_p40", 40.0, [e + 1 for e in base]),  # +1 per utt
           _scored(tmp_path / "mel", "asr_p80", 80.0, [0] * 40)]
    text = "\n".join(paired_comparison(cnn, mel, ("cnn", "mel")))
    assert "|test|40|10.00|30.00|+20.00 [+20.00, +20.00]|+200%|" in text
    assert "|test|80|10.00|0.00|-10.00 [" in text
    assert "mel − cnn [95% CI]" in text and "1 × 1 × 40" in text  # what the interval covers

    out = tmp_path / "fronts.md"
    assert main(["compare", "--a", *map(str, cnn), "--b", str(mel[0]), "--labels", "cnn", "mel",
                 "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("|test|")]
    assert len(rows) == 1 and rows[0].startswith("|test|40|")  # only the rate both have

    twice = _scored(tmp_path / "mel", "asr_sampled", 40.0, base)
    with pytest.raises(ValueError, match="both decoded on test at 40"):
        paired_comparison(cnn, [mel[0], twice], ("cnn", "mel"))
    with pytest.raises(ValueError, match="share no"):
        paired_comparison(cnn[:1], mel[1:], ("cnn", "mel"))
    with pytest.raises(FileNotFoundError, match="mel: no scored decodings"):
        paired_comparison(cnn, [tmp_path / "nothing"], ("cnn", "mel"))
