"""``python -m trainfaas.services.cli``: the same as the ``trainfaas`` command."""
from trainfaas.services.cli.main import main

main()
