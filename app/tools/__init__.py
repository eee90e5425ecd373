"""Operator tools behind CLI commands: their logic lives here, `app.cli` only parses."""
