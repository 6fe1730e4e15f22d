"""BER evaluation throughput of the classical baselines, and how it scales with N_T.

Run: .venv/bin/python benchmarks/ber_bench.py [--repeats 3] [--blas-threads N] [--no-write]
Each row runs one Monte Carlo point (Eb/N0 6 dB, QPSK, N_R = N_T) through
`profilers.phy.montecarlo.simulate` for a fixed bit budget (the error target set out of
reach), so the time covers the whole link: bits, mapping, channel, noise, detection and the
error tally. Wall time is the best of the repeats; CPU time is that run's process time
(all threads). Results go to a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EBN0_DB = 6.0
# (detector, channel, nt, bits per run): budgets sized so each run takes about a second
CASES = [
    ("zf", "cross", 2, 10_000_000),
    ("zf", "cross", 4, 10_000_000),
    ("zf", "cross", 8, 10_000_000),
    ("mmse", "cross", 2, 10_000_000),
    ("mmse", "cross", 4, 10_000_000),
    ("mmse", "cross", 8, 10_000_000),
    ("ml", "cross", 2, 4_000_000),
    ("ml", "cross", 4, 1_000_000),
    ("ml", "cross", 8, 100_000),
    ("zf", "rayleigh", 2, 4_000_000),
    ("zf", "rayleigh", 4, 4_000_000),
    ("zf", "rayleigh", 8, 4_000_000),
    ("mmse", "rayleigh", 2, 4_000_000),
    ("mmse", "rayleigh", 4, 4_000_000),
    ("mmse", "rayleigh", 8, 4_000_000),
    ("ml", "rayleigh", 2, 2_000_000),
    ("ml", "rayleigh", 4, 500_000),
    ("ml", "rayleigh", 8, 20_000),
]


def measure(detector: str, channel: str, nt: int, bits: int, repeats: int) -> dict[str, float]:
    from profilers.phy.baselines import baseline_link
    from profilers.phy.channels import ChannelSpec
    from profilers.phy.montecarlo import simulate

    link = baseline_link(detector, 2, ChannelSpec(channel, nt, nt))  # type: ignore[arg-type]
    best_wall, best_cpu, ber = float("inf"), 0.0, 0.0
    for seed in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        (point,) = simulate(
            link, [EBN0_DB], detector=detector, target_errors=bits + 1, max_bits=bits, seed=seed
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert point.bits == bits
        if wall < best_wall:
            best_wall, best_cpu, ber = wall, cpu, point.ber
    return {
        "wall_s": best_wall,
        "cpu_s": best_cpu,
        "bits_per_s": bits / best_wall,
        "bits_per_cpu_s": bits / best_cpu,
        "ber": ber,
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.blas_threads is not None:  # before numpy loads OpenBLAS
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)

    load_before = os.getloadavg()
    rows = []
    for detector, channel, nt, bits in CASES:
        result = measure(detector, channel, nt, bits, args.repeats)
        rows.append((detector, channel, nt, bits, result))
        print(
            f"{detector:4} {channel:8} {nt}x{nt}  {bits:>10} bits  {result['wall_s']:7.3f} s"
            f"  {result['bits_per_s']:10.3e} bits/s  cpu {result['cpu_s']:7.3f} s"
            f"  {result['bits_per_cpu_s']:10.3e} bits/cpu-s"
            f"  BER {result['ber']:.3e}",
            flush=True,
        )
    load_after = os.getloadavg()

    by_key = {(d, c, n): r for d, c, n, _, r in rows}
    zf2 = by_key[("zf", "cross", 2)]
    mmse2 = by_key[("mmse", "cross", 2)]
    ml4 = by_key[("ml", "cross", 4)]
    threads = "default" if args.blas_threads is None else str(args.blas_threads)
    command = "python benchmarks/ber_bench.py --repeats " + str(args.repeats)
    if args.blas_threads is not None:
        command += f" --blas-threads {args.blas_threads}"
    lines = [
        f"Command: `{command}`",
        "",
        f"QPSK, N_R = N_T, Eb/N0 {EBN0_DB:g} dB, one point per row run to its bit budget through "
        f"`simulate` (bits, Gray mapping, channel, noise, detection, error tally); best wall time "
        f"of {args.repeats} seeds, CPU time of that run (all threads). OpenBLAS threads: "
        f"{threads}. The machine is shared with other jobs: load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs, so "
        "wall numbers vary by several times between runs; CPU seconds vary less.",
        "",
        "| detector | channel | N_T x N_R | bits | wall (s) | bits/s | CPU (s) | bits/CPU-s "
        "| BER |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for detector, channel, nt, bits, r in rows:
        lines.append(
            f"| {detector} | {channel} | {nt}x{nt} | {bits:,} | {r['wall_s']:.3f} | "
            f"{r['bits_per_s']:.3g} | {r['cpu_s']:.3f} | {r['bits_per_cpu_s']:.3g} | "
            f"{r['ber']:.3g} |"
        )
    lines += [
        "",
        f"- ZF 2x2 QPSK on `cross`: {zf2['bits_per_s']:.3g} bits/s wall, "
        f"{zf2['bits_per_cpu_s']:.3g} per CPU second; MMSE 2x2: {mmse2['bits_per_s']:.3g} wall, "
        f"{mmse2['bits_per_cpu_s']:.3g} per CPU second (target >= 1e7 bits/s): "
        f"{_verdict(min(zf2['bits_per_s'], mmse2['bits_per_s']) >= 1e7)} in wall time, "
        f"{_verdict(min(zf2['bits_per_cpu_s'], mmse2['bits_per_cpu_s']) >= 1e7)} per CPU second.",
        f"- ML 4x4 QPSK on `cross`, 10^6 bits: {ml4['wall_s']:.2f} s wall, {ml4['cpu_s']:.2f} s "
        f"CPU (target < 10 s): {_verdict(ml4['wall_s'] < 10)}.",
    ]
    if not args.no_write:
        from benchmarks.results import write_section

        write_section(
            f"BER: classical baselines throughput (OpenBLAS threads: {threads})", "\n".join(lines)
        )


if __name__ == "__main__":
    main()
