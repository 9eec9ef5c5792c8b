"""The functions an execution calls, and the context they hand an adapter."""
