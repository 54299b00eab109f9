"""Experiments as files: a TOML file of VMs, networks, routers and cc commands, brought up and down.

``load(FILE)`` reads and checks a file (errors name its line), ``plan``
compiles it into minimega command lines, ``up`` brings it to a node and
changes only what changed since the last ``up``, ``down`` takes it away.
``megabus plan|up|down FILE`` are the command-line faces (``cli/experiment.py``).

Modules:
    _locate: the line of every key of a TOML file.
    _model: the file's structs and checks (:class:`ExperimentError`).
    _compile: command lines, each with its place in the file.
    _apply: ``up`` and ``down`` over a :class:`~megabus.client.Client`.
"""

from megabus.client.experiments._apply import Progress, Report, down, up
from megabus.client.experiments._compile import TAG, Step, plan
from megabus.client.experiments._model import Experiment, ExperimentError, Loaded, VmSpec, load

__all__ = [
    "TAG",
    "Experiment",
    "ExperimentError",
    "Loaded",
    "Progress",
    "Report",
    "Step",
    "VmSpec",
    "down",
    "load",
    "plan",
    "up",
]
