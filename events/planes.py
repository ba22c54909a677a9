"""Planes and the components that live in them (DESIGN: "Components")."""

from __future__ import annotations

from enum import StrEnum


class Plane(StrEnum):
    CONTROL = "control"
    DATA = "data"
    CUSTOMER = "customer"


class Component(StrEnum):
    """Every kind of party that sends or receives a message."""

    CONTROL_PLANE = "control_plane"
    AUDIT_LOG = "audit_log"
    # The featureplane CLI acting on the control plane's API, as Tecton's SDK does for `tecton apply`.
    OPERATOR = "operator"
    FEATURE_SERVER = "feature_server"
    RIFT = "rift"
    ONLINE_STORE = "online_store"
    OFFLINE_STORE = "offline_store"
    EXTERNAL_COMPUTE = "external_compute"
    # The customer's own applications: event producers, model services calling get-features.
    CUSTOMER_APP = "customer_app"


PLANE_OF: dict[Component, Plane] = {
    Component.CONTROL_PLANE: Plane.CONTROL,
    Component.AUDIT_LOG: Plane.CONTROL,
    Component.OPERATOR: Plane.CONTROL,
    Component.FEATURE_SERVER: Plane.DATA,
    Component.RIFT: Plane.DATA,
    Component.ONLINE_STORE: Plane.CUSTOMER,
    Component.OFFLINE_STORE: Plane.CUSTOMER,
    Component.EXTERNAL_COMPUTE: Plane.CUSTOMER,
    Component.CUSTOMER_APP: Plane.CUSTOMER,
}
