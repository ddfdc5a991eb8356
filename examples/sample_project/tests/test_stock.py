import asyncio
from decimal import Decimal

import pytest

from inventory.models import Item
from inventory.report import low_stock
from inventory.stock import OutOfStock, Stock

CUP = Item("C-1", "cup", Decimal("3.50"))
MUG = Item("M-1", "mug", Decimal("6.00"))


def test_reserve_takes_from_the_level():
    stock = Stock()
    stock.receive(CUP, 3)
    assert asyncio.run(stock.reserve(CUP, 2)) == 1


def test_reserving_more_than_available_fails():
    stock = Stock()
    stock.receive(CUP, 1)
    with pytest.raises(OutOfStock):
        asyncio.run(stock.reserve(CUP, 2))


def test_low_stock_lists_lowest_first():
    stock = Stock()
    stock.receive(CUP, 4)
    stock.receive(MUG, 1)
    assert low_stock(stock, [CUP, MUG]) == ["mug", "cup"]
