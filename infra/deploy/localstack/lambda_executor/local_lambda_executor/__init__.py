"""LocalStack's Lambda runtime executor on local_lambda: each execution environment is one worker process."""
