"""Prometheus metrics (and, later, health bookkeeping) of the operator."""
