"""Reference models of the kernel IPVS schedulers (pure Python)."""
