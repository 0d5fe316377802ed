"""bpfast: back-propagation as Rumelhart, Hinton & Williams (1986) described it, with a compiled,
multi-threaded core.

>>> import bpfast
>>> net = bpfast.Network([6, 2, 1], seed=1)
>>> X, T = bpfast.datasets.symmetry()
>>> result = net.fit(X, T, lr=0.1, momentum=0.9, n_sweeps=20000, stop_tol=0.2)
"""

__version__ = "0.1.0"  # before the imports: bpfast.io records it in saved files

from . import datasets, reference, units
from ._build import build_info
from .io import load
from .network import FitResult, Network
from .population import Population, PopulationResult
from .recurrent import RecurrentNetwork
from .schedule import Phase
from .topology import Layer, Tie, Topology

__all__ = ["Network", "RecurrentNetwork", "Population", "Layer", "Tie", "Phase", "FitResult", "PopulationResult",
           "Topology", "build_info", "load", "datasets", "reference", "units", "__version__"]
