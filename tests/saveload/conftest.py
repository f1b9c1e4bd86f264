from ..annotations.conftest import database_url, serve, store

__all__ = ["database_url", "serve", "store"]
