"""Simulated agents for ``agenttrail demo``: the two workloads of the field note, run
through the real SDK, with the failures it warns about mixed in."""

from agenttrail.demo._workloads import WORKLOADS, DemoPlan, run_workloads

__all__ = ["WORKLOADS", "DemoPlan", "run_workloads"]
