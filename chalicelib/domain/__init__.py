"""The business: the purchase and return sagas' steps and compensations, their contracts and errors, fault
injection, and the saga's status moves and audit log. No AWS SDK and no web framework here."""
