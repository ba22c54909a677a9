"""The feature-repository SDK: declare entities, sources, feature views and services in Python.

    from sdk import Aggregate, Attribute, BatchSource, Entity, FeatureService, Field, StreamFeatureView, ...

A repository is a folder of Python files; `featureplane apply <folder>` compiles the objects it
declares to plain specs (`events.specs`) and sends them to the control plane. No code crosses a plane:
transformations are polars SQL text or polars expressions serialized to JSON.
"""

from events.specs import AggregationFunction, DType, FileFormat, RecordFormat
from sdk.features import Aggregate, Attribute, LifetimeWindow, TimeWindow, TimeWindowSeries
from sdk.objects import BatchSource, Entity, Field, PushSource, RequestSource, StreamSource
from sdk.views import BatchFeatureView, FeatureService, RealtimeFeatureView, StreamFeatureView

__all__ = [
    "Aggregate", "AggregationFunction", "Attribute", "BatchFeatureView", "BatchSource", "DType", "Entity",
    "FeatureService", "Field", "FileFormat", "LifetimeWindow", "PushSource", "RealtimeFeatureView",
    "RecordFormat", "RequestSource", "StreamFeatureView", "StreamSource", "TimeWindow", "TimeWindowSeries",
]
