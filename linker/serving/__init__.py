"""The parts of the HTTP service (:mod:`linker.server`): the model's lanes, the request guard, the JSON shapes."""
