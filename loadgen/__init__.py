"""Traffic tools for the LVS testbed."""
