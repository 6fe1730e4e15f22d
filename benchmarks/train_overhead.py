"""A training job's overhead against a plain Keras `model.fit` of the same model.

    PYTHONPATH=. .venv/bin/python -m benchmarks.train_overhead [--steps 600] [--rounds 3]

Both sides run in fresh processes with the same environment (`profilers.allocator`'s child
settings: BFC allocator, one thread), the same model (`build_training_model`), batch and
step count, alternating job / fit for `--rounds` rounds. The job side is the real
`app.worker.training.train_and_evaluate` (data drawn per step, the allocator peak read per
step, progress written to its file, checkpoints every `--checkpoint-every` steps); its time
is the wall time of its training loop (`train_s`, first step's tracing included). The fit
side draws the same amount of data up front (not timed) and times one `model.fit` over it
(its tracing included). Writes its section of benchmarks/RESULTS.md (benchmarks.results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.results import write_section

SPEC = {"family": "tanh-bae", "k": 2, "nt": 2, "ht": 64, "hr": 256, "batch": 512}


def _train_params(steps: int, every: int) -> dict[str, Any]:
    return {
        "channel": "cross",
        "cross": 0.3,
        "train_ebn0_db": 7.0,
        "steps": steps,
        "lr": 1e-3,
        "batch": SPEC["batch"],
        "seed": 1,
        "checkpoint_every": every,
    }


def _env() -> dict[str, str]:
    from profilers.allocator import REPO_ROOT, child_env

    env = {**os.environ, **child_env("CPU:0")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def job_seconds(steps: int, every: int) -> float:
    from app.worker import training
    from estimator.spec import FamilySpec, canonical_json

    with tempfile.TemporaryDirectory(prefix="phymem-overhead-") as workdir:
        payload = {
            "kind": "train",
            "spec_json": canonical_json(FamilySpec(**SPEC)),
            "train": _train_params(steps, every),
            "evaluate": {"ebn0_db": "0", "target_errors": 1, "max_bits": 64, "baselines": []},
            "job_dir": workdir,
        }
        outcome = training.run_task(payload)
    if outcome.get("status") != "ok":
        raise RuntimeError(outcome.get("error"))
    return float(outcome["train_s"])


def fit_seconds(steps: int) -> float:
    command = [sys.executable, "-m", "benchmarks.train_overhead", "--fit-child", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["fit_s"])


def _fit_child(steps: int) -> None:
    import numpy as np
    import tensorflow as tf

    from app.api.schemas import TrainParams
    from app.worker.training import build_training_model, train_batch
    from estimator.spec import FamilySpec
    from profilers.allocator import pin_threads

    pin_threads(tf)
    spec = FamilySpec(**SPEC)
    train = TrainParams.model_validate(_train_params(steps, steps))
    net = build_training_model(spec, train)
    rng = np.random.default_rng(1)
    batches = [train_batch(spec, train, rng) for _ in range(steps)]
    inputs = [np.concatenate([b[0][i] for b in batches]) for i in range(len(batches[0][0]))]
    labels = np.concatenate([b[1] for b in batches])
    start = time.perf_counter()
    net.model.fit(inputs, labels, batch_size=SPEC["batch"], epochs=1, shuffle=False, verbose=0)
    print(json.dumps({"fit_s": time.perf_counter() - start}))


TITLE = "Training job overhead vs plain model.fit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--fit-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit_child is not None:
        _fit_child(args.fit_child)
        return
    job, fit = [], []
    for _ in range(args.rounds):
        job.append(job_seconds(args.steps, args.checkpoint_every))
        fit.append(fit_seconds(args.steps))
        print(f"job {job[-1]:.2f} s, fit {fit[-1]:.2f} s", flush=True)
    j, f = statistics.median(job), statistics.median(fit)
    overhead = (j - f) * 100.0 / f
    body = [
        f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.train_overhead --steps "
        f"{args.steps} --rounds {args.rounds} --checkpoint-every {args.checkpoint_every}`",
        "",
        f"Tanh-BAE k=2, 2x2 cross, H_T=64, H_R=256, batch {SPEC['batch']}, {args.steps} steps, "
        "one thread, fresh processes alternating; medians of "
        f"{args.rounds} rounds: job training loop {j:.2f} s ({j / args.steps * 1000:.2f} "
        f"ms/step), model.fit {f:.2f} s ({f / args.steps * 1000:.2f} ms/step): overhead "
        f"{overhead:+.1f}% (target within 10%). Rounds: job "
        f"{', '.join(f'{x:.2f}' for x in job)} s; fit {', '.join(f'{x:.2f}' for x in fit)} s. "
        "The job's loop draws its data per step, reads the allocator peak per step, writes "
        "progress and checkpoints, on TF's single-threaded executor as `profile` measures; "
        "fit runs on the default executor, its data drawn before its timer started.",
    ]
    write_section(TITLE, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
