"""Device classes and the Ray resources that route a job to a node that has the device.

A node advertises the classes it serves as custom resources named ``device:<class>``
(``ray start --resources='{"device:a100-80gb": 4}' --num-gpus=4``; the embedded Ray of
`phymem worker` advertises ``device:cpu`` and, with PHYMEM_WORKER_DEVICE_CLASS, its GPUs).

A job of class

- ``cpu`` asks for one CPU (and one ``device:cpu`` where the cluster advertises it);
- a GPU of the catalog (``estimator.devices``, e.g. ``a100-80gb``) asks for one GPU and one
  ``device:<class>``, so Ray sets CUDA_VISIBLE_DEVICES to the GPU it granted;
- any other class (a deployment's own, e.g. ``cpu-highmem``) asks for one ``device:<class>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CPU = "cpu"
PREFIX = "device:"
CLASS_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def is_gpu_class(name: str) -> bool:
    from estimator.devices import DEVICES

    return name in DEVICES


def resource_name(device_class: str) -> str:
    return f"{PREFIX}{device_class}"


def available_classes(cluster_resources: Mapping[str, float]) -> set[str]:
    """The device classes a cluster can serve, from `ray.cluster_resources()`."""
    classes = {
        key[len(PREFIX) :]
        for key, amount in cluster_resources.items()
        if key.startswith(PREFIX) and amount > 0
    }
    if cluster_resources.get("CPU", 0) > 0:
        classes.add(CPU)
    return classes


def task_options(device_class: str, cluster_resources: Mapping[str, float]) -> dict[str, Any]:
    """`.options(...)` of the Ray task that runs one job of `device_class`."""
    name = resource_name(device_class)
    if device_class == CPU:
        custom = {name: 1.0} if cluster_resources.get(name, 0) > 0 else {}
        return {"num_cpus": 1, "num_gpus": 0, "resources": custom}
    if is_gpu_class(device_class):
        return {"num_cpus": 1, "num_gpus": 1, "resources": {name: 1.0}}
    return {"num_cpus": 1, "num_gpus": 0, "resources": {name: 1.0}}
