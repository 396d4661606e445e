"""A deterministic discrete-event simulator that runs many real cores over a
simulated network with faults, checking the invariants after every step.

Replay any run with ``rais sim --seed N`` (and the same other flags).
"""

from rais.sim.engine import Simulation
from rais.sim.params import SimParams, SimResult

__all__ = ["SimParams", "SimResult", "Simulation"]
