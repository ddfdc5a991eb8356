"""Plain data: catalogue items, customers and orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum


class Tier(Enum):
    REGULAR = "regular"
    SILVER = "silver"
    GOLD = "gold"


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price: Decimal
    weight_kg: float = 0.5
    taxable: bool = True


@dataclass(frozen=True)
class Customer:
    name: str
    tier: Tier = Tier.REGULAR
    country: str = "DE"
    tax_exempt: bool = False


@dataclass
class OrderLine:
    item: Item
    quantity: int


@dataclass
class Order:
    customer: Customer
    lines: list[OrderLine] = field(default_factory=list)
    coupon: str | None = None

    def add(self, item: Item, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.lines.append(OrderLine(item, quantity))

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)
