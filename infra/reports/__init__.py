"""Dashboards, cost and diagrams: the operators' dashboard for CloudWatch and Grafana, make cost and make
diagrams."""
