"""The adapter SDK: what an adapter author imports, all from here.

    from trainfaas.adapters import ModelAdapter, Options, TrainContext, NullContext
    from trainfaas.adapters import AdapterError, ConfigError, DatasetError

``ModelAdapter`` is the class to subclass, ``Options`` the base of its declared options (a pydantic
model), ``TrainContext`` what ``train`` reports through and ``NullContext`` one that reports nowhere,
for running an adapter by hand. An adapter raises ``DatasetError`` for a data set it cannot read,
``ConfigError`` for options that cannot work together and ``AdapterError`` for a model it cannot
load (a checkpoint or base model of another architecture, say).

Importing this package is cheap: it imports pydantic, not torch. The built-in adapters, the
catalog and the data set helpers are submodules, imported only when asked for.
"""
from trainfaas.adapters.base import ModelAdapter, NullContext, Options, TrainContext
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError

__all__ = ["AdapterError", "ConfigError", "DatasetError", "ModelAdapter", "NullContext", "Options", "TrainContext"]
