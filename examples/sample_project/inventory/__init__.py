"""A tiny inventory service: items, stock reservations, pricing and reports."""
