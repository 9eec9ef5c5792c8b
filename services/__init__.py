"""The trainfaas control plane: API, entities, state machine, queues, instances, CLI and SDK."""
