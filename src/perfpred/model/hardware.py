"""Numeric descriptors of targets (conf/target/<name>.yaml `hardware:` and `toolchain:`): what the pooled model reads."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import yaml

from perfpred import config

#: The numeric hardware fields, units in their names; a target file gives every one (host targets: read here).
HARDWARE_FIELDS: tuple[str, ...] = (
    "gpu_arch_generation",
    "cuda_cores",
    "tensor_cores",
    "gpu_max_clock_mhz",
    "memory_gb",
    "memory_bandwidth_gbps",
    "cpu_cores",
    "cpu_max_clock_mhz",
)


def host_hardware() -> dict[str, float]:
    """This machine's descriptor: CPU cores (os.cpu_count), max clock (psutil, else /proc/cpuinfo), memory (psutil).

    A CPU has no CUDA cores: the GPU fields are 0. Memory bandwidth is not readable without a benchmark: 0 marks it
    unknown (the pooled model also knows the target's identity and device, so this does not pass for a slow memory).
    """
    import psutil

    clock_mhz = 0.0
    frequency = psutil.cpu_freq()
    if frequency is not None and frequency.max:
        clock_mhz = float(frequency.max)
    else:  # VMs often report no cpufreq: /proc/cpuinfo's current clock is the best there is
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            clocks = [float(line.split(":")[1]) for line in cpuinfo.read_text().splitlines() if line.startswith("cpu MHz")]
            clock_mhz = max(clocks, default=0.0)
    return {
        "gpu_arch_generation": 0.0,
        "cuda_cores": 0.0,
        "tensor_cores": 0.0,
        "gpu_max_clock_mhz": 0.0,
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "memory_bandwidth_gbps": 0.0,
        "cpu_cores": float(os.cpu_count() or 0),
        "cpu_max_clock_mhz": clock_mhz,
    }


def check_hardware(hardware: dict, where: str) -> dict[str, float]:
    """The numeric fields of a `hardware:` mapping, checked: every field present, a finite number >= 0."""
    if not isinstance(hardware, dict):
        raise ValueError(f"{where}: `hardware` must be a mapping with {', '.join(HARDWARE_FIELDS)}, got {hardware!r}")
    if hardware.get("from_host"):
        return {**host_hardware(), **{k: float(v) for k, v in hardware.items() if k in HARDWARE_FIELDS}}
    missing = [f for f in HARDWARE_FIELDS if f not in hardware]
    if missing:
        raise ValueError(f"{where}: `hardware` lacks {missing}; give every one of {', '.join(HARDWARE_FIELDS)} "
                         "(numbers from the board's data sheet, 0 for a GPU it does not have)")
    checked = {}
    for field in HARDWARE_FIELDS:
        try:
            value = float(hardware[field])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: hardware.{field} must be a number, got {hardware[field]!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: hardware.{field} must be a finite number >= 0, got {value}")
        checked[field] = value
    return checked


def toolchain_version(target_conf: dict) -> str:
    """The toolchain's version: a string in the target file, or {package: NAME}, the installed package's version."""
    from importlib.metadata import PackageNotFoundError, version

    stated = target_conf.get("toolchain_version", "unknown")
    if isinstance(stated, dict) and "package" in stated:
        try:
            return version(str(stated["package"]))
        except PackageNotFoundError:
            return "unknown"
    return str(stated)


@lru_cache(maxsize=64)
def _descriptor_cached(name: str, hardware_file: str | None) -> tuple[tuple[str, float], ...]:
    target_conf = config.target_config(name) if hardware_file is None else {}
    where = f"conf/target/{name}.yaml"
    hardware = target_conf.get("hardware")
    if hardware_file is not None:
        path = Path(hardware_file)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such hardware file (a YAML mapping of {', '.join(HARDWARE_FIELDS)})")
        loaded = yaml.safe_load(path.read_text()) or {}
        hardware, where = loaded.get("hardware", loaded), str(path)
    return tuple(check_hardware(hardware, where).items())


def descriptor(name: str, hardware_file: str | os.PathLike | None = None) -> dict[str, float]:
    """The numeric hardware descriptor of a target, from conf/target/<name>.yaml or a `--hardware` YAML file."""
    return dict(_descriptor_cached(name, None if hardware_file is None else str(hardware_file)))


def toolchain(name: str) -> str:
    """The toolchain family of a target (e.g. 'tensorflow-1.x', 'tflite'); 'unknown' without a target file."""
    try:
        return str(config.target_config(name).get("toolchain", "unknown"))
    except config.ConfigError:
        return "unknown"


def hardware_name(target_conf: dict) -> str:
    """The human name of a target's hardware (the `hardware.name` string)."""
    hardware = target_conf.get("hardware", "")
    return str(hardware.get("name", "")) if isinstance(hardware, dict) else str(hardware)
