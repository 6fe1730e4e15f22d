"""Named GPUs and the memory a training job can use on each."""

from __future__ import annotations

from dataclasses import dataclass

from estimator.units import MIB


@dataclass(frozen=True)
class Device:
    name: str
    label: str
    memory_bytes: int  # total device memory as the driver reports it (nvidia-smi)
    note: str = ""


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("v100-16gb", "NVIDIA V100 16GB", 16_384 * MIB),
        Device("v100-32gb", "NVIDIA V100 32GB", 32_768 * MIB),
        Device("a100-40gb", "NVIDIA A100 40GB", 40_960 * MIB),
        Device("a100-80gb", "NVIDIA A100 80GB", 81_920 * MIB),
        Device("h100-80gb", "NVIDIA H100 80GB", 81_559 * MIB),
        Device("h200-141gb", "NVIDIA H200 141GB", 143_771 * MIB),
        Device("l4-24gb", "NVIDIA L4", 23_034 * MIB),
        Device("rtx-3090-24gb", "NVIDIA GeForce RTX 3090", 24_576 * MIB),
        Device("rtx-4090-24gb", "NVIDIA GeForce RTX 4090", 24_564 * MIB),
    )
}


def get_device(name: str) -> Device:
    try:
        return DEVICES[name.lower()]
    except KeyError:
        known = ", ".join(DEVICES)
        raise ValueError(f"unknown device {name!r}; known devices: {known}") from None
