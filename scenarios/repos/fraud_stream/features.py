"""The stream side of examples/fraud, for the fraud_detection scenario: the card-transactions topic with
windowed aggregates (one over a column the view's expression adds) and the latest transaction per user,
chargebacks pushed over HTTP, and a realtime view that compares the amount being authorized (sent as the
request context) with the user's habits.

The definitions are those of examples/fraud without the batch source (files in S3) and the batch view
(the batch_backfill scenario has those).
"""

from datetime import timedelta

import polars as pl

from sdk import (
    Aggregate,
    Attribute,
    Entity,
    FeatureService,
    Field,
    PushSource,
    RealtimeFeatureView,
    RequestSource,
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
    transformation=[pl.col("amount").log1p().alias("log_amount")],
    features=[
        Aggregate("amount", "count", TimeWindow(timedelta(minutes=10))),
        Aggregate("amount", "mean", TimeWindow(timedelta(hours=1))),
        Aggregate("amount", "max", TimeWindow(timedelta(days=1))),
        Aggregate("log_amount", "stddev_samp", TimeWindow(timedelta(days=1))),
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

authorization = RequestSource(schema=[Field("amount", "float64"), Field("country", "string")])

# Computed per request from what the caller sends and the user's stored features.
transaction_risk = RealtimeFeatureView(
    name="transaction_risk",
    sources=[authorization, user_velocity, user_last_transaction],
    transformation="""
        SELECT amount / user_velocity__amount_mean_1h_continuous AS amount_vs_mean_1h,
               amount > 3 * user_velocity__amount_mean_1h_continuous AS unusual_amount,
               country <> user_last_transaction__last_country AS new_country
        FROM source
    """,
    features=[Attribute("amount_vs_mean_1h", "float64"), Attribute("unusual_amount", "bool"),
              Attribute("new_country", "bool")],
)

fraud_stream = FeatureService(name="fraud_stream", features=[user_velocity, user_last_transaction])
merchant_risk = FeatureService(name="merchant_risk", features=[merchant_chargebacks])
# Asked at authorization time, with the transaction in the request context.
authorization_risk = FeatureService(name="authorization_risk", features=[transaction_risk, user_velocity])
