#!/usr/bin/env bash
# Run the test suite in .venv. Extra arguments go to pytest (e.g. -k cif, -x, -m "not slow").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x .venv/bin/python ]]; then
    echo "tools/test.sh: .venv is missing; run 'bash tools/install.sh' first" >&2
    exit 1
fi
# Two workers (pytest-xdist), one test file each at a time: the slow tests are recipe
# runs whose single-threaded stages leave a core idle, so two files side by side cut the
# wall time on 2 cores. The slowest files are collected first (tests/conftest.py) and
# --no-loadscope-reorder keeps that order, so both workers start on them; what several
# files need (the FSDD recipe run, a tiny OFA model) is built once per run.
# ESPNET_OFA_TEST_WORKERS=0 runs everything in one process. The recipes' python3 commands
# run in a warm Python (tests/warm_python.py); ESPNET_OFA_TEST_WARM_PYTHON=0 starts each
# in a fresh interpreter instead.
workers=${ESPNET_OFA_TEST_WORKERS:-2}
parallel=()
[ "${workers}" = 0 ] || parallel=(-n "${workers}" --dist loadfile --no-loadscope-reorder)
# One compute thread per process (the recipes' path.sh does the same): two workers, each
# with its recipe jobs and ESPnet subprocesses, already fill both cores, and torch's default
# of one thread per core makes them spin against each other (the quick tests, -m "not slow",
# took 22% longer so).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}
# -rs lists every skipped test with its reason; --durations=25 the slowest steps.
# The kill-every-stage sweep (tests/test_stage_kill.py, 1.5 recipe runs) is deselected
# unless ESPNET_OFA_RUN_STAGE_KILL=1; a quick kill test of representative stages always runs.
# pytest exits 5 when it collected no tests; that is a failure here.
.venv/bin/python -m pytest tests -rs --durations=25 "${parallel[@]}" "$@"
