"""The reference agents of agent-bus: each module is one deployable agent service.

Run one with ``bus agent run agents.planner:agent``; modules whose names start with ``_`` are
shared helpers, not agents. This directory is not installed as a package (the OpenAI Agents
SDK owns the ``agents`` import name): it is imported from the working directory.
"""
