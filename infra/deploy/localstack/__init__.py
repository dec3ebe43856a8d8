"""LocalStack: host-mode LocalStack for the test tier, and deployment of the packaged stack to a LocalStack endpoint."""
