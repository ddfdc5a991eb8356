"""The development path: ``bus up`` and ``bus demo`` run a whole bus on one machine."""
