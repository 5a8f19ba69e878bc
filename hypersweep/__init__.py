"""hypersweep: how small can the network be? Sweeps over hypernetworks, embedding models
and plain networks (Galanti & Wolf, "On the Modularity of Hypernetworks", NeurIPS 2020)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hypersweep")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
