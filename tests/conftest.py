"""Unit tests run on the host without root or a guest; `vm` tests need both."""
