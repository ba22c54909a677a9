"""Feature views of the fraud example: batch and stream aggregates, and a realtime view that compares
the amount being authorized with the user's habits.

Apply it with `featureplane apply examples/fraud --workspace <name>`
(features.py imports its entities and sources from sources.py).
"""

from datetime import UTC, datetime, timedelta

import polars as pl
from sources import chargebacks, merchant, transactions_history, transactions_stream, user

from sdk import (
    Aggregate,
    Attribute,
    BatchFeatureView,
    FeatureService,
    Field,
    LifetimeWindow,
    RealtimeFeatureView,
    RequestSource,
    StreamFeatureView,
    TimeWindow,
    TimeWindowSeries,
)

DAY = timedelta(days=1)

# Daily batch aggregates over the files, with the SQL transformation running on the table `source`.
user_spending = BatchFeatureView(
    name="user_spending",
    source=transactions_history,
    entities=[user],
    transformation="SELECT user_id, ts, amount, country, amount > 1000 AS is_large FROM source",
    features=[
        Aggregate("amount", "sum", TimeWindow(30 * DAY)),
        Aggregate("amount", "approx_percentile", TimeWindow(30 * DAY), params={"percentile": 0.95}),
        Aggregate("country", "last_distinct_n", TimeWindow(90 * DAY), params={"n": 5}),
        Aggregate("amount", "count", TimeWindowSeries(-7 * DAY, timedelta(0), DAY), name="daily_counts_7d"),
        Aggregate("amount", "max", LifetimeWindow()),
    ],
    batch_schedule=DAY,
    feature_start_time=datetime(2024, 1, 1, tzinfo=UTC),
    description="What a user spent over the last months",
    owner="risk-team",
    tags={"model": "fraud"},
)

# Continuous stream aggregates; the expression adds a column. With batch_schedule, events before the view
# was created come from the source's batch source (`featureplane materialize user_velocity --start S --end E`,
# or at apply with a feature_start_time), the later ones from the stream (docs/repository-dsl.md).
user_velocity = StreamFeatureView(
    name="user_velocity",
    source=transactions_stream,
    entities=[user],
    transformation=[pl.col("amount").log1p().alias("log_amount")],
    features=[
        Aggregate("amount", "count", TimeWindow(timedelta(minutes=10))),
        Aggregate("amount", "mean", TimeWindow(timedelta(hours=1))),
        Aggregate("log_amount", "stddev_samp", TimeWindow(DAY)),
    ],
    batch_schedule=DAY,
    prevent_destroy=True,
    description="How fast a user is spending right now",
)

merchant_chargebacks = StreamFeatureView(
    name="merchant_chargebacks",
    source=chargebacks,
    entities=[merchant],
    features=[Aggregate("amount", "sum", TimeWindow(7 * DAY), name="chargeback_amount_7d")],
    aggregation_interval=timedelta(hours=1),
)

user_last_transaction = StreamFeatureView(
    name="user_last_transaction",
    source=transactions_stream,
    entities=[user],
    features=[Attribute("amount", "float64", name="last_amount"), Attribute("country", "string",
                                                                           name="last_country")],
    ttl=timedelta(days=30),
)

authorization = RequestSource(schema=[Field("amount", "float64"), Field("country", "string")])

# Computed per request from what the caller sends and the user's stored features.
transaction_risk = RealtimeFeatureView(
    name="transaction_risk",
    sources=[authorization, user_velocity, user_last_transaction],
    transformation="""
        SELECT amount > 3 * user_velocity__amount_mean_1h_continuous AS unusual_amount,
               country <> user_last_transaction__last_country AS new_country
        FROM source
    """,
    features=[Attribute("unusual_amount", "bool"), Attribute("new_country", "bool")],
    description="Whether the authorization looks unlike the user's recent behaviour",
)

fraud_detection = FeatureService(
    name="fraud_detection",
    features=[user_spending, user_velocity, merchant_chargebacks, transaction_risk],
    description="Everything the fraud model reads at authorization time",
    owner="risk-team",
)
