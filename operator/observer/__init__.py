"""Read-only observers: pods, the JobMaster and checkpoint storage turned into facts.

The observers never act; ``controller`` gathers their ``facts.Facts`` for ``reconciler.plan``.
"""
