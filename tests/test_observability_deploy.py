"""deploy/prometheus.yml and the Grafana dashboard: valid, complete, and their PromQL parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
SERVICES = {"planner", "linter", "tester", "reviewer", "rule-reviewer", "docs", "coordinator"}
METRICS = (
    "bus_messages_total",
    "bus_handler_seconds",
    "bus_retries_total",
    "bus_breaker_state",
    "bus_ratelimit_wait_seconds",
    "bus_cache_hits_total",
    "bus_cache_misses_total",
    "bus_dlq_total",
    "bus_runs_total",
    "bus_run_seconds",
    "bus_transitions_rejected_total",
)
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")


def test_prometheus_scrapes_every_service_on_9100() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["port"] == 9100
            targets.update(sd["names"])
        for static in job.get("static_configs", []):
            targets.update(t.split(":")[0] for t in static["targets"])
    assert targets == SERVICES


@needs_promtool
def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(["promtool", "check", "config", str(PROMETHEUS)],
                            capture_output=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_dashboard_has_a_panel_for_every_metric() -> None:
    text = " ".join(expr for _, expr in expressions())
    for metric in METRICS:
        assert metric in text, metric


def test_dashboard_panels_do_not_overlap_and_ids_are_unique() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not cells & mine, panel["title"]
        cells |= mine


def _as_promql(expr: str) -> str:
    """Grafana's variables replaced by what they expand to with 'All' selected."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    return re.sub(r"\$(agent|topology)\b", ".*", expr)


@needs_promtool
def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    rules: dict[str, Any] = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": _as_promql(expr)}
                    for i, (_, expr) in enumerate(expressions())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)],
                            capture_output=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
