from decimal import Decimal

import pytest

from inventory.models import Customer, Item, Order, Tier
from inventory.pricing import quote

PEN = Item("P-1", "pen", Decimal("2.00"), weight_kg=0.1)
BOOK = Item("B-1", "book", Decimal("20.00"), weight_kg=1.0, taxable=False)


def test_empty_order_costs_nothing():
    assert quote(Order(Customer("ann")))["total"] == Decimal(0)


def test_small_order_pays_tax_and_shipping():
    order = Order(Customer("ann"))
    order.add(PEN, 2)
    prices = quote(order)
    assert prices["subtotal"] == Decimal("4.00")
    assert prices["tax"] == Decimal("0.76")
    assert prices["shipping"] == Decimal("4.90")
    assert prices["total"] == Decimal("9.66")


def test_gold_customers_get_ten_percent_off():
    order = Order(Customer("bob", tier=Tier.GOLD))
    order.add(BOOK, 1)
    assert quote(order)["discount"] == Decimal("2.00")


def test_unknown_coupon_is_rejected():
    order = Order(Customer("ann"), coupon="FREE")
    order.add(PEN)
    with pytest.raises(ValueError, match="unknown coupon"):
        quote(order)


def test_bulk_discount_starts_at_ten_units():
    order = Order(Customer("ann"))
    order.add(PEN, 10)
    assert quote(order)["discount"] == Decimal("1.00")
