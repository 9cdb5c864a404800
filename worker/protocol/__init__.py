"""The protocol floor: what crosses a process boundary, declared once (messages, framing, auth)."""
