"""Each fact has one owner, and the rest of the package asks it:

* 16 kHz and the 20 ms input period: `espnet_ofa.constants`;
* the ESPnet tasks: `espnet_ofa.espnet_tasks.TASKS` (the recipe layer and the shell too);
* the default `rate_range` (the trained range), and the `PathLike` type (`espnet_ofa.fileio`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import espnet_ofa
from espnet_ofa.constants import SAMPLE_RATE
from espnet_ofa.espnet_tasks import TASKS, task_kinds, task_names

PACKAGE = Path(espnet_ofa.__file__).resolve().parent
REPO = PACKAGE.parent
TASK_WORDS = set(TASKS) | set(task_kinds())


def package_files():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(), str(path))


def test_sample_rate_and_input_period_have_one_owner():
    owned = ("SAMPLE_RATE", "INPUT_PERIOD_MS", "FRAME_HOP")
    found = []
    for name, tree in package_files():
        if name == "espnet_ofa/constants.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value == SAMPLE_RATE:
                found.append(f"{name}:{node.lineno}: literal {SAMPLE_RATE}")
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in owned:
                        found.append(f"{name}:{node.lineno}: {target.id} restated")
    assert not found, "import these from espnet_ofa.constants instead:\n" + "\n".join(found)


# Collections keyed by the kinds of output, owned by the module that scores them.
KIND_TABLES = {("espnet_ofa/recipe/scoring.py", "SCORERS"), ("espnet_ofa/recipe/scoring.py", "METRICS")}


def test_no_module_keeps_its_own_task_list():
    found = []
    for name, tree in package_files():
        if name == "espnet_ofa/espnet_tasks.py":
            continue
        kind_tables = {table for file, table in KIND_TABLES if file == name}
        allowed = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                   and any(getattr(t, "id", None) in kind_tables for t in node.targets)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                items = node.elts
            elif isinstance(node, ast.Dict):
                items = node.keys
            else:
                continue
            words = {e.value for e in items if isinstance(e, ast.Constant) and e.value in TASK_WORDS}
            if len(words) >= 2 and id(node) not in allowed:
                found.append(f"{name}:{node.lineno}: {sorted(words)}")
    shell = sorted((REPO / "egs2").rglob("*.sh"))
    pattern = re.compile(r"^\s*[^#]*\b(asr|slu|st)\s*\|\s*(asr|slu|st)\b")
    for path in shell:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert not found, "ask espnet_ofa.espnet_tasks instead of listing tasks:\n" + "\n".join(found)


def test_every_task_is_scored_and_accepted_by_the_recipe_commands():
    from espnet_ofa.bin.recipe import get_parser
    from espnet_ofa.recipe import scoring

    assert set(scoring.SCORERS) == set(scoring.METRICS) == set(task_kinds())
    result = scoring.score("asr_transducer", {"u1": "one two"}, {"u1": "one"})
    assert result["metric"] == "WER" and result["value"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="task must be one of asr, slu, st, asr_transducer"):
        scoring.score("tts", {"u1": "a"}, {"u1": "a"})
    sub = next(a for a in get_parser()._actions if a.dest == "cmd")
    for cmd in ("score", "score_all", "plan"):
        task = next(a for a in sub.choices[cmd]._actions if a.dest == "task")
        assert tuple(task.choices) == task_names(), cmd


def test_configs_leave_rate_range_to_the_trained_range():
    """``rate_range`` defaults to the periods the OFA model was trained for; a config that
    writes the default range out would silently disagree with a model trained otherwise."""
    import yaml

    from espnet_ofa.compression import DEFAULT_PERIOD_RANGE_MS

    found = []
    for path in sorted([*(REPO / "conf").rglob("*.yaml"), *(REPO / "egs2").rglob("*.yaml")]):
        conf = yaml.safe_load(path.read_text()) or {}
        rate_range = (conf.get("frontend_conf") or {}).get("rate_range") if isinstance(conf, dict) else None
        if rate_range is not None and [float(v) for v in rate_range] == list(DEFAULT_PERIOD_RANGE_MS):
            found.append(str(path.relative_to(REPO)))
    assert not found, "drop rate_range (it is the default) from:\n" + "\n".join(found)


def test_pathlike_is_defined_once():
    found = [f"{name}:{node.lineno}" for name, tree in package_files() if name != "espnet_ofa/fileio.py"
             for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
             and any(getattr(t, "id", None) == "PathLike"
                     for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
    assert not found, "import PathLike from espnet_ofa.fileio instead:\n" + "\n".join(found)


def test_fsdd_download_refuses_a_corrupt_archive_cleanly(tmp_path):
    """FSDD shares the download routine of the other corpora, so a truncated archive is a
    clear error and leaves nothing that looks finished."""
    import io
    import tarfile

    from espnet_ofa.recipe import fsdd

    archive = tmp_path / "fsdd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(50):
            data = bytes(range(256)) * 40
            info = tarfile.TarInfo(f"free-spoken-digit-dataset-1.0.10/recordings/0_alice_{i}.wav")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    root = tmp_path / "fsdd"
    with pytest.raises(fsdd.FSDDError, match="unreadable"):
        fsdd.download_fsdd(root, url=archive.as_uri(), progress=False)
    assert not (root / "recordings").exists() and not list(root.iterdir())


def test_commands_report_errors_through_one_helper():
    """The commands' "error: <message>" reporting lives in espnet_ofa.bin.reports_errors."""
    found = [f"{name}:{node.lineno}" for name, tree in package_files()
             if name.startswith("espnet_ofa/bin/") and not name.endswith("__init__.py")
             for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler)
             and any(isinstance(n, ast.Call) and (getattr(n.func, "id", None) == "print"
                                                  or getattr(n.func, "attr", None) == "exit")
                     for n in ast.walk(node))]
    assert not found, "decorate main with espnet_ofa.bin.reports_errors instead:\n" + "\n".join(found)


RUN_SCRIPTS = sorted((REPO / "egs2").glob("*/*/run.sh"))
TEMPLATE = REPO / "egs2" / "TEMPLATE"


def test_run_scripts_take_their_own_options_through_one_helper():
    """A recipe's own options (--smoke, ...) are parsed by scripts/run_options.sh, not by a
    loop over "$@" copied into each run.sh."""
    found = []
    for path in RUN_SCRIPTS:
        text = path.read_text()
        name = path.relative_to(REPO)
        if re.search(r"while \[ \$# -gt 0 \]|--smoke\)", text):
            found.append(f"{name}: parses its options itself")
        if re.search(r"\$\{?smoke\b", text) and ". scripts/run_options.sh" not in text:
            found.append(f"{name}: reads --smoke without scripts/run_options.sh")
    assert RUN_SCRIPTS and not found, "\n".join(found)


RUN_OPTIONS_DEMO = f"""
set -euo pipefail
smoke=false
tasks="word phone"
run_options="smoke tasks"
. {TEMPLATE}/scripts/run_options.sh
printf '%s|' "smoke=$smoke" "tasks=$tasks" "$@"
"""


@pytest.mark.parametrize("args, expected", [
    ([], "smoke=false|tasks=word phone|"),
    (["--stage", "3", "--smoke", "true", "--tasks=phone", "pos"],
     "smoke=true|tasks=phone|--stage|3|pos|"),
    # another option's value is passed on whole, even when it looks like ours
    (["--local_data_opts", "--smoke x", "--ssl_recipe_opts", "--smoke"],
     "smoke=false|tasks=word phone|--local_data_opts|--smoke x|--ssl_recipe_opts|--smoke|"),
])
def test_run_options_takes_the_recipes_options_and_passes_the_rest(tmp_path, args, expected):
    import subprocess

    (tmp_path / "run.sh").write_text(RUN_OPTIONS_DEMO)
    r = subprocess.run(["bash", "run.sh", *args], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected


@pytest.mark.parametrize("args, message", [
    (["--smoke", "yes"], "run.sh: --smoke must be true or false, got 'yes'"),
    (["--stage", "2", "--smoke"], "run.sh: option --smoke needs a value"),
])
def test_run_options_refuses_bad_values(tmp_path, args, message):
    import subprocess

    (tmp_path / "run.sh").write_text(RUN_OPTIONS_DEMO)
    r = subprocess.run(["bash", "run.sh", *args], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == message


def test_stages_the_pipelines_share_have_one_owner():
    """Stages 1-4 of every pipeline are scripts/data_stages.sh's, the publishing stage is
    common.sh's publish_stage."""
    pipelines = (TEMPLATE / "scripts" / "s2t.sh", TEMPLATE / "ssl.sh")
    found = [f"{path.relative_to(REPO)}: stage {m.group(1)}" for path in pipelines
             for m in re.finditer(r"(?:want_stage|stage_begin) ([1-4])\b", path.read_text())]
    assert not found, "call data_stages (scripts/data_stages.sh) instead:\n" + "\n".join(found)
    found = [str(path.relative_to(REPO)) for path in pipelines
             if "espnet_ofa.bin.publish" in path.read_text()]
    assert not found, "call publish_stage (scripts/common.sh) instead:\n" + "\n".join(found)
