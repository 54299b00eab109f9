"""The front ends: the ``megabus`` console script and the command language.

Nothing is imported here on purpose: ``megabus -e`` must start in a few tens
of milliseconds, so each front end imports what it needs when it is chosen.
"""
