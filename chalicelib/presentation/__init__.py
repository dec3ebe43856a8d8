"""What people and clients see: the API's answer models, a saga's views, the OpenAPI document, the saga page
and its state machine diagram."""
