"""GPU check of `profilers.nvml` against a real NVML: does the sampler see a known allocation?

Run on a machine with an NVIDIA GPU and PyTorch or CuPy (no TensorFlow needed):
    python3 benchmarks/nvml_check.py [--gib 4] [--out nvml_check.json]
It samples device and per-process memory while the script allocates and frees `--gib` GiB
through the framework's caching allocator, and prints one JSON object: device name and
total memory as NVML reports them, the baseline, the peak, and the peak minus baseline
next to the bytes allocated. The CPU test suite checks the same sampler against a stand-in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimator.units import GIB
from profilers.nvml import NvmlSampler


def _allocate(size: int) -> tuple[str, object]:
    """Allocate `size` bytes on GPU 0 and touch them; the framework used and the buffer."""
    try:
        import torch

        buffer = torch.ones(size // 4, dtype=torch.float32, device="cuda")
        torch.cuda.synchronize()
        return f"torch {torch.__version__}", buffer
    except ImportError:
        import cupy

        buffer = cupy.ones(size // 4, dtype=cupy.float32)
        cupy.cuda.Device(0).synchronize()
        return f"cupy {cupy.__version__}", buffer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    size = int(args.gib * GIB)
    with NvmlSampler(interval_s=0.005) as sampler:
        if not sampler.available:
            print(json.dumps({"available": False, "reason": sampler.report.reason}))
            raise SystemExit(1)
        time.sleep(0.2)
        baseline = sampler.report.samples[0]
        framework, buffer = _allocate(size)
        time.sleep(0.3)  # several sampling periods with the buffer alive
        del buffer
        time.sleep(0.1)
    report = sampler.report
    peak_device = report.peak_device_used_bytes or 0
    result = {
        "available": True,
        "device_name": report.device_name,
        "device_total_bytes": report.device_total_bytes,
        "framework": framework,
        "allocated_bytes": size,
        "samples": len(report.samples),
        "baseline_device_used_bytes": baseline.device_used_bytes,
        "peak_device_used_bytes": peak_device,
        "device_delta_bytes": peak_device - baseline.device_used_bytes,
        "peak_process_used_bytes": report.peak_process_used_bytes,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
