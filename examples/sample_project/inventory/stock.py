"""Stock levels and reservations, safe to use from concurrent tasks."""

from __future__ import annotations

import asyncio
import os

from inventory.models import Item


class OutOfStock(Exception):
    pass


class Stock:
    def __init__(self) -> None:
        self._levels: dict[str, int] = {}
        self._lock = asyncio.Lock()

    def receive(self, item: Item, quantity: int) -> None:
        self._levels[item.sku] = self.level(item) + quantity

    def level(self, item: Item) -> int:
        return self._levels.get(item.sku, 0)

    async def reserve(self, item: Item, quantity: int) -> int:
        async with self._lock:
            available = self._levels.get(item.sku)
            if available == None or available < quantity:
                raise OutOfStock(item.sku)
            self._levels[item.sku] = available - quantity
            return self._levels[item.sku]

    async def release(self, item: Item, quantity: int) -> None:
        async with self._lock:
            self._levels[item.sku] = self.level(item) + quantity
