"""The allocator profiler (fresh process, OOM as a status) and the NVML sampler."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from estimator.spec import FamilySpec
from profilers.allocator import Measurement, measure_in_subprocess
from profilers.nvml import NvmlSampler

SMALL = FamilySpec(family="bae", k=2, nt=2, ht=16, hr=32, batch=64)


@pytest.mark.tensorflow
def test_measure_in_a_fresh_process() -> None:
    pytest.importorskip("tensorflow")
    m = measure_in_subprocess(SMALL, steps=2)
    assert m.status == "ok", m.error
    assert m.peak_bytes is not None and m.peak_bytes > 0
    assert len(m.step_peaks) == 2 and m.peak_bytes == max(m.step_peaks)
    assert m.resident_bytes is not None and 0 < m.resident_bytes <= m.peak_bytes
    assert m.tf_version and m.tf_version.startswith("2.")
    assert m.device == "CPU:0" and m.step_time_s is not None


@pytest.mark.tensorflow
def test_over_large_config_is_oom_not_a_crash() -> None:
    pytest.importorskip("tensorflow")
    # 2^20 one-hot messages: a 2048 x 2^20 float32 batch alone is 8 GiB, beyond the cap
    big = FamilySpec(family="ae", k=5, nt=4, ht=16, hr=32, batch=2048)
    m = measure_in_subprocess(big, steps=1, memory_limit_bytes=3 * 2**30, timeout_s=300)
    assert m.status == "oom", m.error


def test_broken_child_is_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    m = measure_in_subprocess(SMALL, device="NOPE:7", timeout_s=120)
    assert m.status in ("failed", "ok")  # a bad device name never raises in the caller
    assert isinstance(m, Measurement)


def test_measurement_round_trips_json() -> None:
    m = Measurement(status="ok", peak_bytes=5, step_peaks=[4, 5])
    import json

    assert Measurement.from_dict(json.loads(m.to_json())) == m


class FakeNvml:
    """A stand-in with pynvml's method names.

    This is a seam: there is no GPU on the development machine, so the sampling logic is
    tested against this object instead of the real pynvml module.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.used = 1000
        self.calls = 0
        self.shut = False
        self.lock = threading.Lock()

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"Fake H100"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        with self.lock:
            self.calls += 1
            self.used += 100
            return SimpleNamespace(total=80 * 2**30, used=self.used, free=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(pid=self.pid, usedGpuMemory=self.used // 2),
            SimpleNamespace(pid=self.pid + 1, usedGpuMemory=7),
        ]


def test_sampler_records_device_and_process_usage() -> None:
    fake = FakeNvml(pid=4242)
    with NvmlSampler(interval_s=0.001, nvml=fake, pid=4242) as sampler:
        assert sampler.available
        deadline = time.monotonic() + 5
        while len(sampler.report.samples) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
    report = sampler.report
    assert report.device_name == "Fake H100" and report.device_total_bytes == 80 * 2**30
    assert len(report.samples) >= 5 and fake.shut
    used = [s.device_used_bytes for s in report.samples]
    assert used == sorted(used) and report.peak_device_used_bytes == used[-1]
    assert all(s.process_used_bytes == s.device_used_bytes // 2 for s in report.samples)
    count = len(report.samples)
    time.sleep(0.02)
    assert len(report.samples) == count  # stopped


def test_sampler_unavailable_without_gpu() -> None:
    class Broken:
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    with NvmlSampler(nvml=Broken()) as sampler:
        assert not sampler.available and "NVML" in (sampler.report.reason or "")
        assert sampler.sample() is None
    assert sampler.report.peak_device_used_bytes is None


def test_real_pynvml_reports_this_machines_gpu_or_why_not() -> None:
    """Real NVML: available exactly when the NVIDIA driver exposes a GPU here (its device
    node), and then it names the device and samples memory within the device's size."""
    has_gpu = any(Path("/dev").glob("nvidia[0-9]*"))
    sampler = NvmlSampler()
    sampler.start()
    report = sampler.stop()
    sampler.close()
    assert report.available is has_gpu, report.reason
    if has_gpu:
        assert report.device_name and report.device_total_bytes
        assert report.samples  # stop() takes one last sample
        peak = report.peak_device_used_bytes
        assert peak is not None and 0 < peak <= report.device_total_bytes
    else:
        assert report.reason and not report.samples


@pytest.mark.tensorflow
def test_batch_tensor_is_a_copy_whatever_the_alignment() -> None:
    tf = pytest.importorskip("tensorflow")
    import numpy as np

    from profilers.allocator import _batch_tensor

    for array in (np.arange(24, dtype=np.float32).reshape(4, 6), np.arange(5, dtype=np.int32)):
        tensor = _batch_tensor(tf, array)
        assert tensor.dtype == array.dtype and tuple(tensor.shape) == array.shape
        expected = array.copy()
        array += 1  # the tensor owns its buffer: the array's later changes do not show
        assert (tensor.numpy() == expected).all()


@pytest.mark.tensorflow
def test_a_traced_process_replays_exactly_through_the_framework_allocator(tmp_path) -> None:
    """`profilers.trace`: TF's own allocation events, replayed through the framework mode's
    BFC model, give the same chunk sizes and bytes in use at every event."""
    pytest.importorskip("tensorflow")
    import json
    import os
    import subprocess
    import sys

    from profilers.allocator import REPO_ROOT
    from profilers.trace import first_divergence, replay

    spec = tmp_path / "bae.json"
    spec.write_text('{"family": "bae", "k": 2, "nt": 2, "ht": 32, "hr": 64, "batch": 64}')
    out = tmp_path / "trace.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "profilers.trace", "record", str(spec), str(out)]
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=REPO_ROOT)
    data = json.loads(out.read_text())
    assert data["measurement"]["status"] == "ok"
    events = data["events"]
    result = replay(events)
    assert result.events == len(events) > 1000
    assert result.mismatches == 0, result
    assert result.model_peak == result.traced_peak >= data["measurement"]["peak_bytes"]
    assert first_divergence(events, events) is None
    changed = [dict(event) for event in events]
    changed[10]["requested_bytes"] = int(changed[10]["requested_bytes"]) + 1
    assert first_divergence(events, changed) == 10
    # `explain`: the traced peak's live chunks sum to the measured peak, and what is not
    # matched by size on either side accounts for the gap between the two peaks
    from profilers.allocator import parse_spec
    from profilers.trace import explain, traced_live

    peak, live = traced_live(data)
    assert peak == data["measurement"]["peak_bytes"] == sum(held.chunk for held in live)
    found = explain(data, parse_spec(spec.read_text()))
    assert found.traced_peak == peak
    assert "traced peak - modelled peak" in found.verdict()
    unmatched = sum(h.chunk for h in found.traced_only) - sum(h.chunk for h in found.modelled_only)
    slack = found.traced_slack - found.modelled_slack
    matched_rounding = found.traced_peak - found.modelled_peak - unmatched
    assert abs(matched_rounding) <= abs(slack) + 256 * len(live)


def test_explain_matches_the_two_peaks_by_size() -> None:
    """A synthetic trace: what TF holds beyond the model's live set is listed, by op."""
    from profilers.allocator import parse_spec
    from profilers.trace import explain, modelled_live

    spec = parse_spec(
        '{"input_kind": "real", "input_size": 4, "batch": 8, "loss": "mse", '
        '"optimizer": "sgd", "layers": [{"type": "dense", "units": 4, "activation": "linear"}]}'
    )
    _, modelled = modelled_live(spec)
    events = []
    for n, held in enumerate(modelled):
        events.append(
            {
                "kind": "alloc",
                "addr": n,
                "requested_bytes": held.requested,
                "allocation_bytes": held.chunk,
                "tf_op": "phymem_1/dense_0_1/MatMul",
            }
        )
    extra = {
        "kind": "alloc",
        "addr": 10**6,
        "requested_bytes": 5000,
        "allocation_bytes": 5120,
        "tf_op": "gradient_tape/phymem_1/dense_0_1/Something",
    }
    events.append(extra)
    total = 0
    for event in events:
        total += event["allocation_bytes"]
        event["bytes_allocated"] = total
    found = explain({"events": events, "measurement": {"peak_bytes": total}}, spec)
    assert [(h.requested, h.source) for h in found.traced_only] == [
        (5000, "grad:dense_0_1/Something")
    ]
    assert found.modelled_only == []
    assert found.traced_peak - sum(h.chunk for h in modelled) == 5120


def test_a_crashed_child_is_oom_only_by_its_signal_or_exception_type() -> None:
    import signal

    from profilers.allocator import UNCAUGHT_BAD_ALLOC, crash_status

    assert crash_status(-signal.SIGKILL, "") == "oom"
    assert crash_status(-signal.SIGABRT, f"{UNCAUGHT_BAD_ALLOC}\n  what(): std::bad_alloc") == "oom"
    # text that merely mentions memory is no evidence of running out of it
    assert crash_status(1, "ValueError: ZOOM factor; OOM; ResourceExhaustedError") == "failed"
    assert crash_status(-signal.SIGABRT, "assertion failed") == "failed"
    assert crash_status(-signal.SIGSEGV, UNCAUGHT_BAD_ALLOC) == "failed"


def test_the_memory_limit_follows_the_device() -> None:
    """A CPU profile is limited by its address space, a GPU one by TensorFlow's allocator
    limit. The GPU path itself (`limit_device_memory`) needs a GPU and is not run here."""
    from profilers.allocator import memory_limit_kind

    assert memory_limit_kind("CPU:0") == "address-space"
    assert memory_limit_kind("cpu:0") == "address-space"
    assert memory_limit_kind("GPU:0") == "device-allocator"
    assert memory_limit_kind("GPU:3") == "device-allocator"


@pytest.mark.tensorflow
def test_a_process_whose_thread_pools_cannot_be_pinned_refuses_to_measure() -> None:
    import subprocess
    import sys

    script = (
        "import tensorflow as tf\n"
        "tf.config.threading.set_inter_op_parallelism_threads(2)\n"
        "tf.constant(1.0) + 1.0  # the runtime starts with two inter-op threads\n"
        "from profilers.allocator import pin_threads\n"
        "try:\n"
        "    pin_threads(tf)\n"
        "except RuntimeError as error:\n"
        "    print('refused:', error)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=300
    )
    assert "refused: TensorFlow's thread pools could not be pinned" in done.stdout, done.stderr
