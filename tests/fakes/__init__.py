"""Local stand-ins for the web APIs the reference agents call: never the internet in tests."""
