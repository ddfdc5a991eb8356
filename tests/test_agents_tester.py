"""The tester agent: pytest in a subprocess on the sample project, its parser and its timeout."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from agents import linter, tester
from bus import PermanentError

SAMPLE = Path(__file__).parents[1] / "examples" / "sample_project"
FAILING = "tests/test_pricing.py::test_bulk_discount_starts_at_ten_units"


async def test_the_sample_project_has_exactly_one_failing_test() -> None:
    report = await tester.run(tester.SuiteRequest(str(SAMPLE)))
    assert (report.passed, report.failed, report.errors, report.skipped) == (9, 1, 0, 0)
    assert report.total == 10
    assert report.failures == (FAILING,)
    assert report.exit_code == 1
    assert report.summary.startswith("1 failed, 9 passed in ")
    assert report.path == str(SAMPLE)


async def test_takes_the_linter_report_as_input_and_writes_nothing_to_the_tree() -> None:
    report = await linter.lint(str(SAMPLE / "simple"))
    request = msgspec.convert(msgspec.to_builtins(report), tester.SuiteRequest)
    result = await tester.run(request)
    assert (result.passed, result.failed, result.exit_code) == (2, 0, 0)
    assert not list(SAMPLE.rglob(".pytest_cache"))
    assert not list(SAMPLE.rglob("__pycache__"))


async def test_a_suite_past_its_timeout_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "test_slow.py").write_text("import time\n\ndef test_slow():\n    time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(PermanentError, match="ran for more than 1 s"):
        await tester.run_suite(str(tmp_path), timeout=1.0)
    assert time.monotonic() - started < 15


async def test_no_tests_is_an_empty_report(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text("X = 1\n")
    report = await tester.run_suite(str(tmp_path))
    assert (report.total, report.exit_code, report.failures) == (0, 5, ())


async def test_collection_errors_are_counted_and_named(tmp_path: Path) -> None:
    (tmp_path / "test_broken.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "test_fine.py").write_text("def test_ok():\n    pass\n")
    report = await tester.run_suite(str(tmp_path))
    assert report.errors == 1
    assert report.failures == ("test_broken.py",)
    assert report.exit_code == 2


def test_parse_reads_every_count_and_failure_line() -> None:
    output = (
        "..F.sE\n"
        "=========================== short test summary info ============================\n"
        "FAILED tests/test_a.py::test_x[a - b] - AssertionError: assert 1 == 2\n"
        "ERROR tests/test_b.py::test_y - RuntimeError: fixture broke\n"
        "1 failed, 3 passed, 1 skipped, 1 error in 0.12s\n"
    )
    report = tester.parse("p", output, exit_code=1, duration_s=0.5)
    assert (report.passed, report.failed, report.errors, report.skipped) == (3, 1, 1, 1)
    assert report.failures == ("tests/test_a.py::test_x[a - b]", "tests/test_b.py::test_y")


def test_parse_without_a_summary_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match=r"pytest failed \(exit 4\): usage: bad flag"):
        tester.parse("p", "", exit_code=4, duration_s=0.1, stderr="usage: bad flag\n")
