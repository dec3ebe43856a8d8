"""The saga orchestrator's core: contracts, domain steps and their adapters."""
