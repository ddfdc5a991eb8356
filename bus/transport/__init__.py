"""The only package that imports ``nats``: connections, streams, KV and delivery."""
