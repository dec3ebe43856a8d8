"""Packaging and LocalStack: make package's artefacts, and the packaged stack deployed to LocalStack."""
