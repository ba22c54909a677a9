"""Scenarios drive featureplane from outside, as its users do, and double as end-to-end tests.

Scenario files and `featureplane replay` arrive with the audit-and-lineage work; until then the
quickstart demo (`examples/quickstart/demo.py`) is the one scenario, run by `make demo`.
"""
