"""Price an order: discounts, coupons, tax and shipping.

`quote` grew one rule at a time and is now the most complex function of the project.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from inventory.models import Order, Tier

BULK_THRESHOLD = 10
TAX_RATES = {"DE": Decimal("0.19"), "FR": Decimal("0.20"), "US": Decimal("0.00")}
COUPONS = {"WELCOME5": Decimal("5.00"), "SPRING10": Decimal("10.00")}


def quote(order: Order, *, express: bool = False) -> dict[str, Decimal]:
    """Price `order`: subtotal, discount, tax, shipping and total, in euros."""
    if not order.lines:
        return {"subtotal": Decimal(0), "discount": Decimal(0), "tax": Decimal(0),
                "shipping": Decimal(0), "total": Decimal(0)}
    subtotal = Decimal(0)
    taxable = Decimal(0)
    weight = 0.0
    for line in order.lines:
        amount = line.item.price * line.quantity
        subtotal += amount
        weight += line.item.weight_kg * line.quantity
        if line.item.taxable and not order.customer.tax_exempt:
            taxable += amount

    discount = Decimal(0)
    # Bulk orders get 5 % off from BULK_THRESHOLD units on.
    if order.units > BULK_THRESHOLD:
        discount += subtotal * Decimal("0.05")
    if order.customer.tier is Tier.GOLD:
        discount += subtotal * Decimal("0.10")
    elif order.customer.tier is Tier.SILVER:
        discount += subtotal * Decimal("0.05")
    if order.coupon:
        try:
            discount += COUPONS[order.coupon.upper()]
        except KeyError:
            raise ValueError(f"unknown coupon {order.coupon!r}") from None
    discount = min(discount, subtotal)

    rate = TAX_RATES.get(order.customer.country, Decimal("0.21"))
    share = (taxable / subtotal) if subtotal else Decimal(0)
    tax = (subtotal - discount) * share * rate

    if subtotal - discount >= 100 and not express:
        shipping = Decimal(0)
    elif weight <= 2 or order.customer.tier is Tier.GOLD:
        shipping = Decimal("4.90")
    else:
        shipping = Decimal("4.90") + Decimal("1.50") * int(weight - 2)
    if express:
        shipping += Decimal("9.90")

    total = subtotal - discount + tax + shipping
    return {key: _cents(value) for key, value in {
        "subtotal": subtotal, "discount": discount, "tax": tax,
        "shipping": shipping, "total": total}.items()}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
