"""object-store: a real S3-compatible server (SeaweedFS) on one machine, for the tests.

``build`` builds SeaweedFS's ``weed`` from its Go module once (cached under
``~/.cache/object-store``); ``server`` starts it with a bucket and credentials in a DIR and
stops it again; ``__main__`` is the command line (``scripts/object-store up DIR --host
ADDR`` / ``down DIR``). Tests import ``server`` (``tests/support/object_store.py``).
"""
