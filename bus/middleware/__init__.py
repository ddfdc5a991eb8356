"""The middleware chain every handler runs in (see ``chain`` for the order)."""
