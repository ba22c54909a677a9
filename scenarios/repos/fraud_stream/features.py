"""The stream side of examples/fraud, for the fraud_detection scenario: the card-transactions topic with
windowed aggregates and the latest transaction per user, and chargebacks pushed over HTTP.

The definitions are those of examples/fraud without the batch source (files in S3), the batch view and the
realtime view; a realtime view joins the `fraud_stream` service here, and a scenario query sends its request
fields as `request_context`.
"""

from datetime import timedelta

from sdk import (
    Aggregate,
    Attribute,
    Entity,
    FeatureService,
    Field,
    PushSource,
    StreamFeatureView,
    StreamSource,
    TimeWindow,
)

user = Entity(name="user", join_keys=["user_id"], description="A card holder")
merchant = Entity(name="merchant", join_keys=["merchant_id"], description="A shop that takes cards")

transactions_stream = StreamSource(
    name="transactions_stream",
    topic="card-transactions",
    timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("merchant_id", "string"), Field("ts", "timestamp"),
            Field("amount", "float64"), Field("country", "string"), Field("is_online", "bool")],
)

chargebacks = PushSource(
    name="chargebacks",
    timestamp_field="ts",
    schema=[Field("merchant_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")],
)

user_velocity = StreamFeatureView(
    name="user_velocity",
    source=transactions_stream,
    entities=[user],
    features=[
        Aggregate("amount", "count", TimeWindow(timedelta(minutes=10))),
        Aggregate("amount", "mean", TimeWindow(timedelta(hours=1))),
        Aggregate("amount", "max", TimeWindow(timedelta(days=1))),
    ],
)

user_last_transaction = StreamFeatureView(
    name="user_last_transaction",
    source=transactions_stream,
    entities=[user],
    features=[Attribute("amount", "float64", name="last_amount"),
              Attribute("country", "string", name="last_country")],
    ttl=timedelta(days=30),
)

merchant_chargebacks = StreamFeatureView(
    name="merchant_chargebacks",
    source=chargebacks,
    entities=[merchant],
    features=[Aggregate("amount", "sum", TimeWindow(timedelta(days=7)), name="chargeback_amount_7d")],
)

fraud_stream = FeatureService(name="fraud_stream", features=[user_velocity, user_last_transaction])
merchant_risk = FeatureService(name="merchant_risk", features=[merchant_chargebacks])
