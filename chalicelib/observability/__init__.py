"""Logs, traces and metrics (Powertools), and the catalogue of the metrics we emit."""
