"""The ``bus`` command: parse, build settings, call the library, print."""
