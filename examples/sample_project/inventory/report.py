"""Text reports of stock levels."""

from __future__ import annotations

from inventory.models import Item
from inventory.stock import Stock


def low_stock(stock: Stock, items: list[Item], threshold: int = 5) -> list[str]:
    """The names of the items whose level is below `threshold`, lowest first."""
    levels = [(stock.level(item), item.name) for item in items]
    total = sum(level for level, _ in levels)
    return [name for level, name in sorted(levels) if level < threshold]


def render(stock: Stock, items: list[Item]) -> str:
    lines = [f"{item.sku:<8} {item.name:<20} {stock.level(item):>5}" for item in items]
    return "\n".join(["SKU      NAME                 LEVEL", *lines])
