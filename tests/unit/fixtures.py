"""A small, valid feature repository shared by unit tests."""

from __future__ import annotations

from events.specs import (
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    RepoSpec,
    StreamSourceSpec,
)

SOURCE = StreamSourceSpec(
    "transactions", "transactions", "ts",
    (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP), FieldSpec("amount", DType.FLOAT64),
     FieldSpec("merchant", DType.STRING), FieldSpec("count", DType.INT64), FieldSpec("online", DType.BOOL)),
)
VIEW = FeatureViewSpec(
    "user_last", ("user",), "transactions",
    (FeatureSpec("last_amount", "amount", DType.FLOAT64), FeatureSpec("last_merchant", "merchant", DType.STRING)),
)
REPO = RepoSpec(
    entities=(EntitySpec("user", ("user_id",)),),
    stream_sources=(SOURCE,),
    feature_views=(VIEW,),
    feature_services=(FeatureServiceSpec("fraud", ("user_last",)),),
)
