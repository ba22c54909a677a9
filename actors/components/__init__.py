"""The components of the three planes, each a pure policy plus what the runtime needs to host it."""
