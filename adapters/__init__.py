"""Model adapters: the ModelAdapter contract, the built-ins and the architecture catalog."""
