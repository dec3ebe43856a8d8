"""Local infrastructure: migrations, the local Step Functions engine, the demo."""
