"""The ``trainfaas`` command line: client commands over the SDK and the server commands."""
