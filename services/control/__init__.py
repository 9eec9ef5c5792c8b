"""The domain: the execution state machine, executions, models, services, instances, projects and tokens."""
