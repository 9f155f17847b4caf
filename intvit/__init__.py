"""intvit: vision transformers compiled to integer-only TVM libraries.

Importing it has no side effects; the TVM thread count is set where a runtime starts
(:func:`intvit.deploy.threads.use_physical_cores`).
"""
