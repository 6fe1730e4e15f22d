"""Sample GPU memory through NVML (nvidia-ml-py) in a background thread.

`NvmlSampler` polls the device's used memory and this process's own usage every
`interval_s` while training steps run, and keeps the samples and their maxima. Without a
GPU, a driver or the `pynvml` module, it reports itself unavailable (`available` is
False, `reason` says why) and sampling is a no-op: it never raises.

The NVML module is injectable (`nvml=`): the tests pass a stand-in object with pynvml's
method names because there is no GPU on the development machine.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    t: float
    device_used_bytes: int
    process_used_bytes: int | None


@dataclass
class NvmlReport:
    available: bool
    reason: str | None = None
    device_name: str | None = None
    device_total_bytes: int | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def peak_device_used_bytes(self) -> int | None:
        return max((s.device_used_bytes for s in self.samples), default=None)

    @property
    def peak_process_used_bytes(self) -> int | None:
        values = [s.process_used_bytes for s in self.samples if s.process_used_bytes is not None]
        return max(values, default=None)


def _load_pynvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


class NvmlSampler:
    """Background sampler: `with NvmlSampler() as s: ...; report = s.report`."""

    def __init__(
        self,
        index: int = 0,
        interval_s: float = 0.01,
        *,
        nvml: Any | None = None,
        pid: int | None = None,
    ) -> None:
        self.index, self.interval_s = index, interval_s
        self.pid = os.getpid() if pid is None else pid
        self._nvml: Any = nvml  # the pynvml module (or a stand-in), loaded by _open
        self._handle: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.report = NvmlReport(available=False)
        self._open()

    def _open(self) -> None:
        try:
            nvml = self._nvml if self._nvml is not None else _load_pynvml()
            nvml.nvmlInit()
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            name = nvml.nvmlDeviceGetName(self._handle)
            info = nvml.nvmlDeviceGetMemoryInfo(self._handle)
        except Exception as error:  # no module, no driver, no device: unavailable
            self.report = NvmlReport(available=False, reason=f"{type(error).__name__}: {error}")
            return
        self._nvml = nvml
        self.report = NvmlReport(
            available=True,
            device_name=name.decode() if isinstance(name, bytes) else str(name),
            device_total_bytes=int(info.total),
        )

    @property
    def available(self) -> bool:
        return self.report.available

    def sample(self) -> Sample | None:
        """Take one sample now (None when unavailable or NVML fails)."""
        if not self.available:
            return None
        try:
            used = int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except Exception:
            return None
        mine = [p.usedGpuMemory for p in processes if p.pid == self.pid]
        own = sum(int(v) for v in mine if v is not None) if mine else None
        taken = Sample(time.monotonic(), used, own)
        with self._lock:
            self.report.samples.append(taken)
        return taken

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def start(self) -> NvmlSampler:
        if self.available and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> NvmlReport:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample()  # one last sample after the steps
        return self.report

    def close(self) -> None:
        self.stop()
        if self.available:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def __enter__(self) -> NvmlSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def device_total_bytes(index: int = 0) -> int | None:
    sampler = NvmlSampler(index)
    total = sampler.report.device_total_bytes
    sampler.close()
    return total
