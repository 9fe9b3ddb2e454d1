"""Claim kinds: one module each, registered with :func:`claim_kind` (see ``base.py``)."""
