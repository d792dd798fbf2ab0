"""The one exception type the CLI turns into a one-line message."""


class TestbedError(Exception):
    """A problem the user can fix (bad input, missing kernel or module).

    The CLI prints ``lvs-testbed: error: <message>`` and exits 2; it never
    shows a traceback for these.
    """

    __test__ = False  # not a pytest test class, despite the name
