"""Entry points: they parse what arrives (an HTTP request, a step event, a command line), call the service
layer and shape its answer. They hold no business logic."""
