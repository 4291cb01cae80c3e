"""vrref: a replicated authoritative DNS server on Viewstamped Replication.

The protocol core (messages, replica, client, service) is sans-I/O and deterministic so that
the same code runs under the threaded runtime, the simulator and the explicit-state explorer.
"""

__version__ = "0.1.0"
