"""The recipe's ``executor:`` section: where a run's work runs (the executors themselves are :mod:`aeinterp.run.executors`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ExecutorConfig", "EXECUTOR_KINDS"]

EXECUTOR_KINDS = ("local", "ray")
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")


class ExecutorConfig(BaseModel):
    """The ``executor:`` section of a recipe (also accepted as a dict by :func:`make_executor`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = Field(
        "local", description="local: this process, steps one after another; ray: steps, sample chunks and targets as Ray tasks"
    )
    address: str = Field("auto", description="ray only: auto | local | ray://host:port | host:port (see the README)")
    num_cpus: float | None = Field(None, gt=0, description="ray only: CPUs each task asks for, also its torch threads (default 1)")
    num_gpus: float | None = Field(None, ge=0, description="ray only: GPUs each task asks for (default 0; fractions share a GPU)")
    max_retries: int = Field(2, ge=0, description="ray only: re-runs of a task whose worker died before its step fails")
    connect_timeout: float = Field(
        30.0, gt=0, description="ray only: seconds to wait for the cluster at a host:port address to answer before the run fails"
    )
    data_from_path: bool = Field(
        True,
        description="ray only: workers map memory-mapped .npy data from its path (every node must see the file); false: send the samples",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if not _ADDRESS.match(value):
            raise ValueError(f"address must be auto, local, ray://host:port or host:port, got {value!r}")
        return value
