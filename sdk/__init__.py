"""The feature-repository SDK: declare entities, sources, feature views and services in Python.

    from sdk import Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource

A repository is a folder of Python files; `featureplane apply <folder>` compiles the objects it
declares to plain specs (`events.specs`) and sends them to the control plane. No code crosses a plane.
"""

from sdk.objects import Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource

__all__ = ["Attribute", "Entity", "FeatureService", "Field", "StreamFeatureView", "StreamSource"]
