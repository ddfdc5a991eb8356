"""The linter agent: ruff's findings on the sample project, by rule."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from agents import linter, planner
from bus import PermanentError

SAMPLE = Path(__file__).parents[1] / "examples" / "sample_project"


async def test_findings_of_the_sample_project_by_rule() -> None:
    report = await linter.check(linter.LintRequest(str(SAMPLE)))
    assert report.path == str(SAMPLE)
    assert report.by_rule == {"F841": 1, "F401": 1, "E711": 1}
    assert report.total == 3
    assert report.fixable == 1  # only the unused import has a safe fix
    located = {(f.file, f.line, f.code) for f in report.findings}
    assert located == {
        ("inventory/report.py", 12, "F841"),
        ("inventory/stock.py", 6, "F401"),
        ("inventory/stock.py", 29, "E711"),
    }


async def test_takes_the_planner_spec_as_input() -> None:
    spec = planner.build_spec(str(SAMPLE))
    request = msgspec.convert(msgspec.to_builtins(spec), linter.LintRequest)
    report = await linter.check(request)
    assert report.total == 3
    assert report.path == spec.path


async def test_limit_caps_the_listed_findings_not_the_counts() -> None:
    report = await linter.lint(str(SAMPLE), limit=1)
    assert len(report.findings) == 1
    assert report.total == 3


async def test_clean_code_has_no_findings(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text('def ok() -> str:\n    return "ok"\n')
    report = await linter.lint(str(tmp_path))
    assert (report.total, report.by_rule, report.findings) == (0, {}, ())


async def test_a_single_file_can_be_linted() -> None:
    report = await linter.lint(str(SAMPLE / "inventory" / "stock.py"))
    assert report.by_rule == {"F401": 1, "E711": 1}
    assert {f.file for f in report.findings} == {"stock.py"}


def test_missing_ruff_is_a_permanent_error_saying_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"ruff is not installed.*agents"):
        linter.ruff_binary(str(tmp_path / "python"), search_path=str(tmp_path))


async def test_a_missing_path_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no such file"):
        await linter.lint(str(tmp_path / "nope"))


async def test_a_broken_ruff_configuration_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "ruff.toml").write_text('line-length = "long"\n')
    (tmp_path / "m.py").write_text("x = 1\n")
    with pytest.raises(PermanentError, match=r"ruff failed \(2\)"):
        await linter.lint(str(tmp_path))
