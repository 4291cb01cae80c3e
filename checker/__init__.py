"""Tools that judge a protocol and its runs: exploration, simulation, linearizability."""
