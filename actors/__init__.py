"""Actors: the component runtime, the Kafka bus seam and the components of the three planes.

Each component is a plain class holding a pure policy and a thin runtime; the deploy module turns them
into Ray actors. Components never call each other: they only consume and produce Kafka topics.
"""
