"""LVS testbed: real kernel IPVS in a Mininet cluster."""
