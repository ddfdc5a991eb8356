"""``bus stats``: per-topology and per-agent numbers from run records and micro STATS."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import anyio

from bus import codec
from bus.cli.common import (
    add_connection_flags,
    add_output_flags,
    print_json,
    run_async,
    settings_from,
)
from bus.errors import InvalidInputError
from bus.observability.stats import AgentStats, Summary, TopologyStats, summarize
from bus.settings import Settings
from bus.subjects import Subjects
from bus.transport.connection import connect
from bus.transport.discovery import gather
from bus.transport.jetstream import ensure_bucket
from bus.transport.kv import Bucket

_READ_CONCURRENCY = 32


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "stats",
        help="runs and agents: success rate, average and p50/p99 time",
        description=(
            "Per topology: runs by state, success rate, average and p50/p99 duration (from the "
            "run records in KV). Per agent: calls, success rate, average and p99 handler time, "
            "breaker state, cache hit rate (from the live agents' NATS micro STATS)."
        ),
    )
    parser.add_argument("--topology", metavar="NAME", help="only this topology and its agents")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="how long to collect agents' STATS answers (default 0.5)",
    )
    add_connection_flags(parser)
    add_output_flags(parser)
    parser.set_defaults(func=_stats)


def _stats(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def main() -> int:
        summary = await collect(settings, topology=args.topology, wait=args.wait)
        if args.json:
            print_json(summary)
        else:
            print(render(summary))
        return 0

    return run_async(main)


async def collect(settings: Settings, *, topology: str | None, wait: float) -> Summary:
    """Read every run record and every agent's STATS, and summarize them."""
    nc = await connect(settings, name="bus stats")
    try:
        subjects = Subjects(settings.prefix)
        runs = await ensure_bucket(nc, subjects, "runs", settings.replicas)
        records = await _records(runs)
        payloads = await gather(nc, "$SRV.STATS", wait=wait)
    finally:
        await nc.close()
    services = [s for s in (_decode_stats(p) for p in payloads) if s is not None]
    services = [s for s in services if _same_bus(s, settings.prefix)]
    return summarize(records, services, topology=topology)


async def _records(bucket: Bucket) -> list[dict[str, Any]]:
    keys = await bucket.keys()
    records: list[dict[str, Any]] = []
    limiter = anyio.Semaphore(_READ_CONCURRENCY)

    async def read(key: str) -> None:
        async with limiter:
            entry = await bucket.get(key)
        if entry is None:
            return
        try:
            records.append(codec.decode(entry.value, dict[str, Any]))
        except InvalidInputError:
            return  # not a run record: skip it rather than fail the whole summary

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(read, key)
    return records


def _decode_stats(payload: bytes) -> dict[str, Any] | None:
    try:
        return codec.decode(payload, dict[str, Any], codec.JSON)
    except InvalidInputError:
        return None


def _same_bus(service: dict[str, Any], prefix: str) -> bool:
    # $SRV.STATS reaches every micro service on this NATS, other buses' and non-bus ones too.
    metadata = service.get("metadata") or {}
    return bool(metadata.get("prefix", prefix) == prefix)


# -- text rendering ----------------------------------------------------------------------------


def render(summary: Summary) -> str:
    """The summary as two aligned tables."""
    parts = []
    if summary.topologies:
        parts.append(_table(_TOPOLOGY_HEAD, [_topology_row(t) for t in summary.topologies]))
    else:
        parts.append("no runs")
    if summary.agents:
        parts.append(_table(_AGENT_HEAD, [_agent_row(a) for a in summary.agents]))
    else:
        parts.append("no live agents answered")
    return "\n\n".join(parts)


_TOPOLOGY_HEAD = ("TOPOLOGY", "RUNS", "STATES", "SUCCESS", "AVG", "P50", "P99")
_AGENT_HEAD = ("AGENT", "INST", "CALLS", "ERRORS", "SUCCESS", "AVG", "P50", "P99", "BREAKER",
               "CACHE HIT")  # fmt: skip


def _topology_row(t: TopologyStats) -> list[str]:
    states = " ".join(f"{state}={count}" for state, count in t.states.items())
    return [
        t.topology,
        str(t.runs),
        states,
        _percent(t.success_rate),
        _seconds(t.avg_s),
        _seconds(t.p50_s),
        _seconds(t.p99_s),
    ]


def _agent_row(a: AgentStats) -> list[str]:
    return [
        a.agent,
        str(a.instances),
        str(a.calls),
        str(a.errors),
        _percent(a.success_rate),
        _millis(a.avg_ms),
        _millis(a.p50_ms),
        _millis(a.p99_ms),
        a.breaker or "-",
        _percent(a.cache_hit_rate),
    ]


def _table(head: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [list(head), *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(head), *rows]]  # fmt: skip
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def _millis(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}ms" if value < 1000 else f"{value / 1000:.2f}s"
