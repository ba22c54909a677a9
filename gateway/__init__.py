"""The HTTP edge of the data plane (aiohttp): Tecton-compatible feature retrieval, health, audit reads.

Only this package maps featureplane errors to HTTP statuses.
"""
