"""`phymem profile --runs N`: fresh processes, median/min/max beside peak and upper bytes;
profiles predicted to overrun their time budget are shortened or refused, never left to hang."""

from __future__ import annotations

import json
import subprocess
import sys

from app.worker import profile
from estimator.spec import FamilySpec
from profilers import budget

PHYMEM = [sys.executable, "-m", "app.cli"]
TINY = ["--family", "bae", "--k", "2", "--nt", "2", "--batch", "8", "--ht", "32", "--hr", "64"]


def test_runs_are_fresh_processes_reported_as_median_min_max():
    done = subprocess.run(
        [*PHYMEM, "profile", *TINY, "--runs", "2", "--steps", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    peaks = sorted(run["measured_bytes"] for run in result["runs"])
    assert len(result["runs"]) == 2 and all(run["status"] == "ok" for run in result["runs"])
    assert result["measured_bytes"] == peaks[0]  # median_low of two: a run's own value
    assert (result["measured_min_bytes"], result["measured_max_bytes"]) == (peaks[0], peaks[-1])
    assert result["basis"] == "tensorflow-2.21-cpu-bfc"
    assert result["upper_bytes"] >= result["peak_bytes"] == result["estimate_bytes"]
    assert result["within_upper"] == all(p <= result["upper_bytes"] for p in peaks)


def test_a_profile_over_its_budget_is_refused_before_any_process_starts():
    spec = FamilySpec(family="bae", k=8, nt=16, batch=4096, precision="mixed")
    planned = budget.plan_steps(spec, steps=3, warm_up_steps=3, budget_s=60)
    if budget.onednn_float16_cpu():
        assert planned.refused is not None and "needs a GPU" in planned.refused
        assert "float16" in planned.refused
    done = subprocess.run(
        [
            *PHYMEM,
            "profile",
            "--family",
            "bae",
            "--k",
            "8",
            "--nt",
            "16",
            "--batch",
            "4096",
            "--precision",
            "mixed",
            "--time-budget",
            "0.01",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert len(result["runs"]) == 1  # refused once, not retried per run
    assert result["error"].startswith("profile refused") and "needs a GPU" in result["error"]


def test_the_budget_measures_fewer_steps_before_refusing():
    spec = FamilySpec(family="bae", k=2, nt=2, batch=256)
    step = budget.predicted_step_s(spec)
    planned = budget.plan_steps(spec, steps=3, warm_up_steps=3, budget_s=5.5 * step)
    assert (planned.steps, planned.refused) == (2, None)
    assert budget.plan_steps(spec, 3, 3, budget_s=3.5 * step).refused is not None


def test_a_tensorflow_other_than_the_traced_one_is_warned_about():
    assert profile.traced_tensorflow("tensorflow-2.21-cpu-bfc") == "2.21"
    assert profile.tensorflow_warning("tensorflow-2.21-cpu-bfc") is None  # installed: 2.21
    warning = profile.tensorflow_warning("tensorflow-1.15-cpu-bfc")
    assert warning is not None and "1.15" in warning
    assert profile.tensorflow_warning("paper-equations") is None


def test_combine_keeps_every_run_and_reports_the_worst_status():
    base = {"estimate_bytes": 100, "upper_bytes": 150, "peak_bytes": 100}
    pairs = [
        {**base, "status": "ok", "measured_bytes": 120, "error_pct": -16.7},
        {**base, "status": "ok", "measured_bytes": 90, "error_pct": 11.1},
        {**base, "status": "oom", "measured_bytes": None, "error": "out of memory"},
    ]
    result = profile.combine(pairs)
    assert result["status"] == "oom" and result["error"] == "out of memory"
    assert (result["measured_bytes"], result["measured_min_bytes"]) == (90, 90)
    assert result["measured_max_bytes"] == 120 and result["within_upper"] is True
    assert [run["status"] for run in result["runs"]] == ["ok", "ok", "oom"]
