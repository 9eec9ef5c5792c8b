"""An instance of a service: the loop that pulls executions and the monitored work processes that run them."""
