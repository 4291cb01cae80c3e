"""vrref: a replicated authoritative DNS server on Viewstamped Replication.

The protocol core (vrref/core: messages, replica, client, state machine) is sans-I/O and
deterministic so that the same code runs under the threaded runtime (vrref/runtime), the
simulator and the explicit-state explorer (checker/). The DNS service it replicates is
vrref/dns. README.md, "Architecture", draws the picture.
"""

from pathlib import Path

__version__ = "0.1.0"

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
"""The example zone and TSIG key shipped with the source tree (used as defaults)."""
