"""`hydra/launcher=ray`: each job of a multirun is one Ray task on a cluster (or on a local Ray).

Our own launcher rather than hydra-ray-launcher 1.2.2: that plugin installs with Python 3.11 and
ray 2.60, but requires cloudpickle<3, which would take the cloudpickle 3.1 that MLflow pickles
predictors with down to 2.2; Ray carries its own cloudpickle. What it does for a local cluster is
this file: load each job's config, run it remotely with Hydra's `run_job`, gather the returns.

    perfpred train -m target=jetson-nano "metric=glob(*)" "algorithm=glob(*)" hydra/launcher=ray \
        hydra.launcher.address=127.0.0.1:6379
"""

# No `from __future__ import annotations`: Hydra scans this module outside sys.modules, where a
# dataclass with string annotations cannot be built.
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class RayLauncherConf:
    """Settings of `hydra/launcher=ray`."""

    _target_: str = "hydra_plugins.perfpred_ray_launcher.ray_launcher.RayLauncher"
    address: Optional[str] = None  # noqa: UP045 (OmegaConf reads Optional, not `str | None`); host:port of the cluster's head, "auto", or null for a local Ray
    num_cpus: int = 1  # CPUs a job reserves on its worker


ConfigStore.instance().store(group="hydra/launcher", name="ray", node=RayLauncherConf, provider="perfpred")


def _run_job(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction, singleton_state: dict) -> JobReturn:
    """One job, in a Ray worker: Hydra's global state as the driver had it, then the task."""
    from hydra.core.hydra_config import HydraConfig

    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class RayLauncher(Launcher):
    """Runs the jobs of a sweep as Ray tasks and returns their results in job order."""

    def __init__(self, address: str | None = None, num_cpus: int = 1) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep what each job needs."""
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit every job, then wait for all of them."""
        import ray

        from perfpred.model import ray_sweep

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        ray_sweep.connect(self.address)
        remote = ray.remote(num_cpus=self.num_cpus)(_run_job)
        log.info(f"Ray launcher: {len(job_overrides)} jobs on {ray.cluster_resources().get('CPU', 0):.0f} CPUs")
        pending: list[Any] = []
        for index, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"ray_{index}"
                sweep_config.hydra.job.num = index
            pending.append(remote.remote(self.hydra_context, sweep_config, self.task_function, Singleton.get_state()))
        return ray.get(pending)
