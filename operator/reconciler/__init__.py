"""Decides what to do: facts in, a plan (status to write, actions, events) out — pure.

``plan.plan`` is the entry; ``operations`` holds the resumable multi-step operations; ``facts``
the plan's data types (its input, ``Facts``, is the observer's). The controller executes plans;
nothing here performs I/O.
"""
