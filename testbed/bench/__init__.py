"""The bench: throughput, connection rate, held connections and failover under load.

Not part of the test run; ``lvs-testbed bench`` runs it and writes
results/<run-id>/bench.json::

    with Cluster(load_topology()) as cluster:
        Bench(cluster, BenchOptions(repetitions=2, connections=20000), print).run(save)
"""

from ._bench import DIRECT, DIRECT_SETUP, GOALS, STATE_TABLE_MODES, Bench, BenchOptions

__all__ = ["DIRECT", "DIRECT_SETUP", "GOALS", "STATE_TABLE_MODES", "Bench", "BenchOptions"]
