"""results.ktap: KTAP version 1 as Documentation/dev-tools/ktap.rst defines it."""

import re

from testbed.report._ktap import ktap_text

RESULTS = {
    "run_id": "20261202-000000-abcd",
    "environment": {"kernel": "6.1.0-57-amd64", "kernel_origin": "installed"},
    "tests": [
        {"nodeid": "conformance/test_a.py::test_one[nat]", "outcome": "passed"},
        {
            "nodeid": "conformance/test_a.py::test_two[dr#1]",
            "outcome": "failed",
            "details": "    assert x\nE   AssertionError: expected 3, got 4\nE   assert 4 == 3\n",
        },
        {
            "nodeid": "conformance/test_b.py::test_skip",
            "outcome": "skipped",
            "skip_reason": "kernel lacks module ip_vs_twos",
        },
        {
            "nodeid": "conformance/test_c.py::test_x",
            "outcome": "xfailed",
            "skip_reason": "keepalived#1760",
        },
        {"nodeid": "conformance/test_c.py::test_y", "outcome": "error", "details": "E   OSError"},
    ],
}


def test_modules_are_top_level_tests_with_their_tests_nested() -> None:
    lines = ktap_text(RESULTS).splitlines()
    assert lines[0] == "KTAP version 1"
    results = [line for line in lines if re.match(r"^(not )?ok ", line)]
    skipped_module = "ok 2 test_b # SKIP every test skipped"
    assert results == ["not ok 1 test_a", skipped_module, "not ok 3 test_c"]
    assert "1..3" in lines
    nested = [line for line in lines if line.startswith("  ")]
    assert nested[:2] == ["  KTAP version 1", "  1..2"]
    assert "  ok 1 test_one[nat]" in nested


def test_failures_skips_and_expected_failures_say_why() -> None:
    lines = ktap_text(RESULTS).splitlines()
    failed = lines.index("  not ok 2 test_two[dr1]")  # no '#' in a description
    assert lines[failed - 2 : failed] == [
        "  # AssertionError: expected 3, got 4",
        "  # assert 4 == 3",
    ]
    assert "  ok 1 test_skip # SKIP kernel lacks module ip_vs_twos" in lines
    assert "  ok 1 test_x # XFAIL keepalived1760" in lines
    assert "  not ok 2 test_y # ERROR OSError" in lines


def test_every_plan_matches_its_results() -> None:
    """A plan line 1..N is followed, at its own indentation, by results 1 to N."""
    lines = ktap_text(RESULTS).splitlines()
    plans = 0
    for i, line in enumerate(lines):
        if not (plan := re.fullmatch(r"( *)1\.\.(\d+)", line)):
            continue
        indent, numbers = plan[1], []
        for later in lines[i + 1 :]:
            if not later.startswith(indent):  # back to the parent's level
                break
            if result := re.match(rf"{indent}(?:not )?ok (\d+)", later):
                numbers.append(int(result[1]))
        assert numbers == list(range(1, int(plan[2]) + 1)), line
        plans += 1
    assert plans == 4
