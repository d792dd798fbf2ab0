"""The bench: throughput, connection rate, held connections and failover under load.

Not part of the test run; ``lvs-testbed bench`` runs it and writes
results/<run-id>/bench.json::

    with Cluster(load_topology()) as cluster:
        opts = BenchOptions(repetitions=2, scale_levels=(0, 10_000, 20_000), sweep=(1, 8))
        Bench(cluster, opts, print).run(save)

The connection rate is swept over the client's offered concurrency (direct and
through each mode's VIP), and the VIP/direct ratio taken where the direct path
does not queue yet. The scale curve holds connections level by level, through
the VIP and directly (the control: the hosts' own socket tables fill alike on
both), and at each level reads the table (entries, its size, bytes per entry)
and measures the rate beside what is held.
"""

from ._bench import DIRECT, DIRECT_SETUP, GOALS, STATE_TABLE_MODES, Bench, BenchOptions, table_size

__all__ = ["DIRECT", "DIRECT_SETUP", "GOALS", "STATE_TABLE_MODES", "Bench", "BenchOptions",
           "table_size"]  # fmt: skip
